import re

import pytest
from conftest import script

pytestmark = pytest.mark.slow  # the maintainer's speed scripts



def test_speed_script_prints_ratios_and_profiles_on_cpu(tmp_path, capsys):
    out = tmp_path / "speed.md"
    assert script("speed").main(["--device", "cpu", "--recipes", "standard,sam", "--steps", "2", "--warmup", "1",
                          "--aa-n", "4", "--aa-epochs", "1", "--aa-data", "digits", "--profile",
                          "--out", str(out)]) == 0
    text = out.read_text()
    assert text in capsys.readouterr().out
    rows = {m[0]: m for m in re.findall(r"^\| sharp_tiny \| (\w+) \| (\d+) \| (\d+) \| ([\d.]+)x \| ([\d.]+) \|",
                                        text, re.M)}
    assert set(rows) == {"standard", "sam"}
    for recipe, ours, ref, ratio, rel in rows.values():
        assert float(ours) > 0 and float(ref) > 0
        assert abs(float(ratio) - float(ours) / float(ref)) < 0.02 * float(ratio) + 0.01  # ratio of the printed rates
    assert float(rows["standard"][4]) == 1.0 and float(rows["sam"][4]) > 0  # relative to standard (timings: not asserted)
    assert re.search(r"PGD-20 evaluation .*: \d+ images/s", text)
    assert re.search(r"^\| standard \| [\d.]+ \|", text, re.M) and re.search(r"^\| pgd_at \| [\d.]+ \|", text, re.M)
    assert text.count("## Where the time goes") == 2 and "aten::" in text


def test_step_breakdown_names_the_source_line_of_a_host_sync():
    mod = script("step_breakdown")
    import torch

    out = mod.breakdown("sharp_tiny", "standard", 8, 2, 1, torch.device("cpu"), [])
    for key in ("loader img/s", "step img/s (batches fetched beforehand)", "loader + step img/s",
                "step img/s at batch 32"):
        assert out[key] > 0, key
    # the sync finder on CPU: a RuntimeError raised inside project code is reported with that file and line
    import zoo.data

    with pytest.raises(RuntimeError) as info:  # reflect padding wider than the image: raised inside zoo
        zoo.data.random_crop_flip(torch.zeros(2, 3, 8, 8), None, pad=10)
    where = script("speed").project_frame(info.tb)  # the sync finder both scripts use
    assert where.startswith("zoo/data.py:") and "random_crop_flip" in where and "F.pad" in where
