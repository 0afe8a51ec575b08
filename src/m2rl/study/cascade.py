"""The cascade arm of the study: sequential GRPO over the domains, one stage per domain.

Stage k trains on one domain with the expert recipe (`rl.steps`) from the model of stage k-1, so the
cascade costs the sum of its stages. Stage 1, GRPO on the first domain from the SFT model, is what
that domain's expert trains: the study takes the expert as stage 1 (its cost still counts in the
cascade's). The order is `study.cascade_order`, or
by default the study's domains in DEFAULT_ORDER: general instruction following first and the domains
with the longest reasoning last (Nemotron-Cascade trains IF-RL before math and code RL), ordered by
the paper's RL cost per step (IF 1.9, science 3.9, math 10.9, code 15.9 GPU-hours: longer responses
cost more), so that the skills costliest to train are the last trained and the least exposed to
forgetting. Domains outside DEFAULT_ORDER (a user's own) come first, in the study's order.
"""

from __future__ import annotations

from omegaconf import DictConfig

from m2rl.errors import UserError

DEFAULT_ORDER = ("if", "science", "math", "code")


def stage_name(prefix: str, k: int, domain: str) -> str:
    """`<study>-s<seed>-cascade-<k>-<domain>`, k from 2 (stage 1 is the first domain's expert)."""
    return f"{prefix}-cascade-{k}-{domain}"


def cascade_order(cfg: DictConfig) -> list[str]:
    """The cascade's domains in training order ([] when `study.cascade` is off); a UserError for an
    order that names a domain outside `study.domains`, repeats one, or has fewer than two (a given
    order is checked with the cascade off too: it is then a forgotten `study.cascade=true`, or a typo)."""
    study = cfg.study
    on, given = bool(study.get("cascade", False)), study.get("cascade_order")
    if not on and given is None:
        return []
    domains = [str(d) for d in study.domains]
    if given is None:
        order = [d for d in domains if d not in DEFAULT_ORDER]
        order += [d for d in DEFAULT_ORDER if d in domains]
    else:
        order = [str(d) for d in given]
        unknown = [d for d in order if d not in domains]
        if unknown:
            raise UserError(
                f"study.cascade_order: unknown domain(s) {', '.join(unknown)}; "
                f"study.domains has {', '.join(domains)}"
            )
        repeated = sorted({d for d in order if order.count(d) > 1})
        if repeated:
            raise UserError(f"study.cascade_order: {', '.join(repeated)} named more than once")
    if len(order) < 2:
        where = "study.cascade_order" if given is not None else "study.domains"
        raise UserError(f"the cascade needs at least two domains ({where}: {', '.join(order) or 'none'})")
    return order if on else []
