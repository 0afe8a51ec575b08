"""Reward types as plugins: by config path and by entry point, through the worker pool, with the
built-ins' deadlines and validation; a plugin that hangs, raises or answers out of [0, 1] costs its
item only; a bad plugin is one line and exit 2."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from m2rl.config import compose_config
from m2rl.data.schema import make_sample, validate_sample
from m2rl.errors import UserError
from m2rl.verifiers import VerifierConfig, close_pool, plugins, score, score_batch
from m2rl.verifiers.config import verifier_settings

from cli_helpers import m2rl

PLUGIN = textwrap.dedent(
    '''
    import time

    def score_sort(sample, text):
        """1 if the answer is the label's numbers in order."""
        return text.split() == sample["label"].split(), "compared"

    def check_sort(sample):
        if not sample.get("label"):
            return "sort sample needs a label"

    def hang(sample, text):
        time.sleep(60)
        return 1.0

    def boom(sample, text):
        raise RuntimeError("plugin bug")

    def too_big(sample, text, config):
        return 1.5

    def no_args():
        return 1
    '''
)


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(PLUGIN)
    return path


def sort_sample(
    sample_id: str, label: str = "1 2 3", rm_type: str | None = None, domain: str = "sort"
) -> dict:
    return make_sample(sample_id, domain, "Sort 3 1 2.", label, rm_type=rm_type)


def config_with(*overrides: str, workers: int = 2) -> VerifierConfig:
    cfg = compose_config([*overrides, f"verifiers.workers={workers}"])
    return VerifierConfig.of(verifier_settings(cfg))


def test_a_plugin_named_in_the_config_scores_through_the_pool_and_checks_samples(plugin_file):
    target = f"{plugin_file}:score_sort"
    config = config_with(
        f"verifiers.custom.sort.score={target}",
        f"verifiers.custom.sort.check={plugin_file}:check_sort",
        "verifiers.custom.sort.budget_s=5",
    )
    samples = [sort_sample("a"), sort_sample("b"), *[make_sample("m", "math", "1+1?", "2")]]
    responses = ["<think>t</think>1 2 3", "<think>t</think>3 2 1", "<think>t</think>\\boxed{2}"]
    verdicts = score_batch(samples, responses, config)
    assert [v.reward for v in verdicts] == [1.0, 0.0, 1.0]
    assert verdicts[0].reason == "compared"
    # the think gate applies to plugins as to the built-ins
    assert score_batch([sort_sample("c")], ["1 2 3"], config)[0].reason == "no </think>"
    # the domain name routes to the plugin, and its check runs at data validation
    assert (
        validate_sample(
            {"id": "d", "domain": "sort", "prompt": [{"role": "user", "content": "x"}], "label": "1"}
        )["rm_type"]
        == "sort"
    )
    with pytest.raises(UserError, match="sort sample needs a label"):
        validate_sample(
            {"id": "e", "domain": "sort", "prompt": [{"role": "user", "content": "x"}]}, "f.jsonl line 4"
        )


def test_a_plugin_from_an_installed_package_entry_point_scores_through_the_pool(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "m2rl_units").mkdir(parents=True)
    (site / "m2rl_units" / "__init__.py").write_text(
        "def score_units(sample, text):\n"
        "    try:\n"
        "        return abs(float(text) - float(sample['label'])) <= 0.01 * abs(float(sample['label']))\n"
        "    except ValueError:\n"
        "        return 0.0, 'not a number'\n"
    )
    info = site / "m2rl_units-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: m2rl-units\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[m2rl.rewards]\nunits = m2rl_units:score_units\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", f"{site}:{':'.join(sys.path)}")
    close_pool()  # workers started before this test would not see the package
    assert "units" in plugins.installed_plugins()
    samples = [make_sample(f"u{i}", "units", "3 km in m?", "3000") for i in range(3)]
    verdicts = score_batch(
        samples, ["<think>t</think>3000", "<think>t</think>3001", "<think>t</think>km"], config_with()
    )
    assert [v.reward for v in verdicts] == [1.0, 1.0, 0.0]
    assert verdicts[2].reason == "not a number"
    close_pool()


def test_a_hanging_raising_or_out_of_range_plugin_costs_only_its_item(plugin_file):
    config = config_with(
        f"verifiers.custom.sort={plugin_file}:score_sort",
        f"verifiers.custom.hang.score={plugin_file}:hang",
        "verifiers.custom.hang.budget_s=1",
        f"verifiers.custom.boom={plugin_file}:boom",
        f"verifiers.custom.too_big={plugin_file}:too_big",
    )
    samples = [
        sort_sample("ok1"),
        sort_sample("h", rm_type="hang"),
        sort_sample("ok2", label="4 5"),
        sort_sample("b", rm_type="boom"),
        sort_sample("t", rm_type="too_big"),
        sort_sample("ok3"),
    ]
    responses = ["<think>t</think>1 2 3", "<think>t</think>x", "<think>t</think>4 5", "<think>t</think>x",
                 "<think>t</think>x", "<think>t</think>3 2 1"]  # fmt: skip
    verdicts = score_batch(samples, responses, config)
    assert [v.reward for v in verdicts] == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert verdicts[1].reason.startswith("timeout")
    assert "raised RuntimeError: plugin bug" in verdicts[3].reason
    assert "1.5" in verdicts[4].reason and "outside [0, 1]" in verdicts[4].reason
    # in-process scoring treats them alike (but for the hang, which only a worker's deadline stops)
    assert score(samples[3], responses[3], config).reward == 0.0
    assert "outside" in score(samples[4], responses[4], config).reason


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_pkg.rewards:score", "no module named 'no_such_pkg'"),
        ("{file}:missing", "has no 'missing'"),
        ("{file}:no_args", "cannot be called as f(sample, text)"),
        ("{file}", "not of the form"),
    ],
)
def test_a_bad_plugin_is_one_line_and_exit_2(plugin_file, tmp_path, target, message):
    records = tmp_path / "in.jsonl"
    records.write_text(json.dumps({"sample": sort_sample("a"), "response": "x"}) + "\n")
    done = m2rl(
        "verify", str(records), "-o", str(tmp_path / "out.jsonl"),
        f"verifiers.custom.sort={target.format(file=plugin_file)}",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("m2rl: error: verifiers.custom.sort") and message in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_verify_scores_with_a_plugin_and_reports_its_type(plugin_file, tmp_path):
    records = tmp_path / "in.jsonl"
    lines = [
        {"sample": sort_sample(str(i)), "response": f"<think>t</think>{r}"}
        for i, r in enumerate(["1 2 3", "2 1"])
    ]
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    done = m2rl(
        "verify",
        str(records),
        "-o",
        str(tmp_path / "out.jsonl"),
        f"verifiers.custom.sort={plugin_file}:score_sort",
    )
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in scored] == [1.0, 0.0]
    assert "sort" in done.stdout and "0.500" in done.stdout


def test_builtin_types_come_from_the_same_registry():
    from m2rl.verifiers.kinds import DOMAIN_ALIASES, RM_TYPES

    builtin = {"math": "deepscaler", "science": "gpqa", "code": "unit_test", "if": "ifevalg"}
    assert {d: DOMAIN_ALIASES[d] for d in builtin} == builtin
    assert all(
        RM_TYPES[name].origin == "m2rl" for name in ("deepscaler", "gpqa", "unit_test", "ifevalg", "ifbench")
    )
    with pytest.raises(UserError, match="already registered"):
        plugins.use_plugins((("gpqa", "operator:eq"),))


def test_grpo_reward_routes_plugin_samples_and_logs_their_domain(plugin_file):
    from m2rl.engine.rewards import DomainRoutedReward, StepClock

    config = config_with(f"verifiers.custom.sort={plugin_file}:score_sort", workers=0)
    samples = [sort_sample("a"), sort_sample("a"), make_sample("m", "math", "1+1?", "2")]
    logged: list[tuple[str, float]] = []
    reward = DomainRoutedReward(config, ["sort", "math"], 16, StepClock())
    rewards = reward(
        [s["prompt"] for s in samples],
        [
            [{"role": "assistant", "content": c}]
            for c in ["<think>t</think>1 2 3", "<think>t</think>3", "<think>t</think>\\boxed{2}"]
        ],
        [[1, 2], [1], [1, 2, 3]],
        sample_id=[s["id"] for s in samples],
        domain=[s["domain"] for s in samples],
        rm_type=[s["rm_type"] for s in samples],
        label=[s["label"] for s in samples],
        metadata_json=[json.dumps(s["metadata"]) for s in samples],
        log_metric=lambda key, value: logged.append((key, value)),
    )
    assert rewards == [1.0, 0.0, 1.0]
    assert [v for k, v in logged if k == "sort/reward"] == [1.0, 0.0]
    assert ("sort/zero_variance_groups", 0.0) in logged and ("math/batch_share", 0.0) in logged
