import importlib.util
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _speed():
    spec = importlib.util.spec_from_file_location("speed", os.path.join(ROOT, "scripts", "speed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_speed_script_prints_ratios_and_profiles_on_cpu(tmp_path, capsys):
    out = tmp_path / "speed.md"
    assert _speed().main(["--device", "cpu", "--recipes", "standard,sam", "--steps", "2", "--warmup", "1",
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
    assert float(rows["standard"][4]) == 1.0 and 0 < float(rows["sam"][4]) < 1  # SAM costs two passes
    assert re.search(r"PGD-20 evaluation .*: \d+ images/s", text)
    assert re.search(r"^\| standard \| [\d.]+ \|", text, re.M) and re.search(r"^\| pgd_at \| [\d.]+ \|", text, re.M)
    assert text.count("## Where the time goes") == 2 and "aten::" in text
