"""Hardening, second round (issue 19): folders that ask to run their own code, output paths that are links or
devices, links inside a run folder, stale locks, class names that split lines, inputs that passed validation and
crashed later, and inputs that ended as an internal error (exit 3) instead of bad input (exit 2).

Each test builds the hostile input, asserts the exit code or the UserError, and that nothing was imported,
replaced or deleted. They are library calls or in-process CLI runs (well under a second each), except the one
that pipes "y" into a real `validate`, because that is the attack.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from edgedistill.cli.main import cli

from edgedistill.errors import UserError
from edgedistill.rundir import LOCK, claim

from .conftest import ROOT, cli_command
from .test_hostile_input import RECIPE, snapshot, write

# ---------------------------------------------------------------- 1. a folder never runs its own code


def code_folder(tmp_path: Path, file: str, doc: dict) -> tuple[Path, Path]:
    """A Hugging Face folder whose `file` asks transformers to import evilmod.py, which leaves a marker."""
    folder = tmp_path / f"hf_{file.split('.')[0]}"
    folder.mkdir()
    marker = tmp_path / "imported.marker"
    (folder / "evilmod.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertConfig, BertModel, BertTokenizerFast\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilnet'\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n"
        "EvilTok = BertTokenizerFast\n")
    (folder / file).write_text(json.dumps(doc))
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    return folder, marker


EVIL_CONFIG = {"model_type": "evilnet", "auto_map": {"AutoConfig": "evilmod.EvilConfig",
                                                      "AutoModel": "evilmod.EvilModel",
                                                      "AutoModelForImageClassification": "evilmod.EvilModel"},
               "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}
EVIL_TOKENIZER = {"tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": ["evilmod.EvilTok", None]}}


@pytest.mark.slow  # a real process reading "y" on stdin (about 10 s, most of it importing torch)
def test_a_model_folder_asking_for_its_own_code_is_exit_2_whatever_stdin_says(tmp_path):
    folder, marker = code_folder(tmp_path, "config.json", EVIL_CONFIG)
    recipe = write(tmp_path / "r.yaml", RECIPE.replace("{name: cnn, channels: [8]}", f"{{name: hf, path: {folder}}}"))
    # transformers asks "Do you wish to run the custom code? [y/N]": answering y must change nothing
    proc = subprocess.run([*cli_command(), "validate", str(recipe)], input="y\n" * 20, capture_output=True, text=True,
                          timeout=300)
    assert not marker.exists(), "the folder's own Python ran"
    assert proc.returncode == 2, proc.stderr
    assert f'{folder / "config.json"} has "auto_map"' in proc.stderr and "Traceback" not in proc.stderr


def test_a_tokenizer_folder_asking_for_its_own_code_is_refused(tmp_path):
    from edgedistill.data.tokenize import load_tokenizer
    from edgedistill.models.hf import hf_model

    folder, marker = code_folder(tmp_path, "tokenizer_config.json", EVIL_TOKENIZER)
    with pytest.raises(UserError, match="auto_map") as err:
        load_tokenizer(folder)
    assert "tokenizer_config.json" in err.value.render()
    (folder / "config.json").write_text(json.dumps({**EVIL_CONFIG, "auto_map": {}}))  # any auto_map, even empty
    with pytest.raises(UserError, match=r"config\.json"):
        hf_model(path=str(folder))
    (folder / "config.json").write_text("[" * 100_000)  # unreadable config: bad input, not a RecursionError
    with pytest.raises(UserError, match="not readable JSON"):
        hf_model(path=str(folder))
    assert not marker.exists()


def test_every_from_pretrained_call_refuses_remote_code():
    """The second lock: every from_pretrained of a transformers class says trust_remote_code=False."""
    missing = []
    for folder in ("edgedistill", "cli", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "from_pretrained"):
                    continue
                owner = ast.unparse(node.func.value)
                if owner.split(".")[-1].startswith("ORT"):  # optimum's ONNX optimizers take ONNX folders, no code
                    continue
                kw = {k.arg: k.value for k in node.keywords}
                value = kw.get("trust_remote_code")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not missing, missing


# ---------------------------------------------------------------- 2. no output replaces a link, device or FIFO


def _specials(tmp_path: Path) -> dict[str, Path]:
    victim = write(tmp_path / "victim.txt", "precious")
    out = {"symlink": tmp_path / "link.xml", "fifo": tmp_path / "fifo.xml", "folder": tmp_path / "dir.xml"}
    out["symlink"].symlink_to(victim)
    os.mkfifo(out["fifo"])
    out["folder"].mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s.sock"))
        out["socket"] = tmp_path / "s.sock"
    except OSError:  # a path too long for AF_UNIX: the other kinds still run
        pass
    sock.close()
    try:
        os.mknod(tmp_path / "null.xml", 0o666 | 0o020000, os.makedev(1, 3))  # a character device (root only)
        out["device"] = tmp_path / "null.xml"
    except (PermissionError, OSError):
        pass
    return out


def _kind(path: Path) -> int:
    return os.lstat(path).st_mode & 0o170000


def test_atomic_writes_never_replace_a_link_device_fifo_or_socket(tmp_path):
    from edgedistill.io import write_text

    for name, path in _specials(tmp_path).items():
        before = _kind(path)
        with pytest.raises(UserError, match="output path is a") as err:
            write_text(path, "<xml/>")
        assert str(path) in err.value.render(), name
        assert _kind(path) == before, f"the {name} was replaced"
    assert (tmp_path / "victim.txt").read_text() == "precious"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_check_junit_refuses_a_special_file_before_any_work(tmp_path):
    runner = CliRunner()
    for name, path in _specials(tmp_path).items():
        before = _kind(path)
        result = runner.invoke(cli, ["check", "missing.json", "--baseline", "missing.json", "--junit", str(path)])
        assert result.exit_code == 2, (name, result.output)
        assert str(path) in result.output and "report not found" not in result.output, result.output
        assert _kind(path) == before
    assert (tmp_path / "victim.txt").read_text() == "precious"


def test_unwritable_output_paths_are_bad_input(tmp_path):
    from edgedistill.gate import GateReport, write_junit
    from edgedistill.pipeline import run_pipeline
    from edgedistill.recipe import load_recipe

    for bad in ("/proc/edgedistill-x.xml", tmp_path / "victim.txt" / "x.xml", tmp_path / ("x" * 300 + ".xml")):
        write(tmp_path / "victim.txt", "precious")
        with pytest.raises(UserError, match=r"cannot write here|is a file"):
            write_junit(GateReport(), bad)
    recipe = load_recipe(str(write(tmp_path / "r.yaml", RECIPE)))
    for out in ("/proc/edgedistill-run", str(tmp_path / "victim.txt" / "run"), str(tmp_path / ("r" * 300)),
                str(tmp_path / "victim.txt")):
        with pytest.raises(UserError):
            run_pipeline(recipe, out)
    with pytest.raises(UserError, match="--out is empty"):
        run_pipeline(recipe, "")
    assert (tmp_path / "victim.txt").read_text() == "precious"


# ---------------------------------------------------------------- 3. a run folder holds only what a run made


def _old_run(root: Path) -> Path:
    (root / "stages" / "0-teacher").mkdir(parents=True)
    (root / "stages" / "0-teacher" / "model.safetensors").write_bytes(b"w")
    (root / "bundle").mkdir()
    (root / "report.json").write_text('{"passed": true}')
    (root / "recipe.resolved.json").write_text("{}")
    return root


@pytest.mark.parametrize("link", ["stages", "bundle", "compare", "cache", "stages/1-distill", "report.html"])
@pytest.mark.parametrize("mode", ["resume", "overwrite"])
def test_links_inside_a_run_folder_are_refused_and_nothing_outside_is_touched(tmp_path, link, mode):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("precious")
    (outside / "sub" / "model.safetensors").write_text("precious too")
    run = _old_run(tmp_path / "run")
    target = run / link
    if target.exists():
        import shutil

        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with pytest.raises(UserError, match="symbolic link") as err, \
            claim(run, resume=mode == "resume", overwrite=mode == "overwrite"):
        pass
    assert str(target) in err.value.render()
    assert snapshot(outside) == before and (run / "report.json").exists()  # refused before anything was removed
    assert not (run / LOCK).exists()


def test_a_fifo_inside_a_stage_folder_is_refused(tmp_path):
    run = _old_run(tmp_path / "run")
    os.mkfifo(run / "stages" / "0-teacher" / "record.json")
    with pytest.raises(UserError, match="FIFO"), claim(run, resume=True, overwrite=False):
        pass


# ---------------------------------------------------------------- 5. an empty or unreadable lock is stale


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00", b"garbage", b"\xff\xfe", b"  \n", b"0 host", b"-7 host"])
def test_an_empty_or_garbled_lock_is_taken_over(tmp_path, content):
    run = _old_run(tmp_path / "run")
    (run / LOCK).write_bytes(content)  # what a full disk or a crash mid-write leaves
    with claim(run, resume=True, overwrite=False):
        assert (run / LOCK).read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    assert not (run / LOCK).exists()


def test_a_live_lock_is_still_respected(tmp_path):
    run = _old_run(tmp_path / "run")
    (run / LOCK).write_text(f"1 {socket.gethostname()}\n")  # pid 1 is always alive
    with pytest.raises(UserError, match="another edgedistill run"), claim(run, resume=True, overwrite=False):
        pass
    (run / LOCK).unlink()
    (run / LOCK).mkdir()
    with pytest.raises(UserError, match="lock file is a folder"), claim(run, resume=True, overwrite=False):
        pass


# ---------------------------------------------------------------- 6. class names cannot split a line


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "cr\r", "sep\u2028x", "nul\x00x", "para\u2029"])
def test_class_names_with_control_characters_are_refused(tmp_path, name):
    from edgedistill.data import DataConfig, load_dataset

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 1, 4, 4)).astype(np.float32)
    y = np.arange(40) % 2
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10], labels=np.array([name, "other"]))
    with pytest.raises(UserError, match="control character"):
        load_dataset(DataConfig(name="npz", path=str(path)))
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10], labels=np.array(["fine name", "other"]))
    assert load_dataset(DataConfig(name="npz", path=str(path))).class_labels == ["fine name", "other"]


# ---------------------------------------------------------------- 7. what passed validation and crashed later


def test_an_empty_validation_split_is_refused_at_validation(tmp_path):
    recipe = write(tmp_path / "r.yaml", RECIPE.replace("{name: digits}", "{name: digits, val_fraction: 0}"))
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert result.exit_code == 2 and "data.val_fraction" in result.output, result.output


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory) -> Path:
    """A WordPiece tokenizer from a hand-written vocabulary (no training, no download)."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tok")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "a", "man", "plays"]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(words)) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    return folder


def _sts_line(i: int, score: float) -> str:
    return f"main\tfile\t2012\t{i:04d}\t{score}\ta man plays {i}\tthe man plays {i}\n"


@pytest.mark.parametrize(("train", "dev", "expected"), [
    ([1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 1.5, 2.5, 3.5, 4.5], [3.0], "one pair"),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 1.5, 2.5, 3.5, 4.5], [2.0, 2.0, 2.0], "all score 2"),
    ([3.0], [1.0, 2.0, 3.0], "empty|one pair"),
])
def test_sts_files_that_cannot_give_a_correlation_are_refused(tmp_path, small_tokenizer, train, dev, expected):
    from edgedistill.data import DataConfig, load_dataset

    (tmp_path / "sts-train.csv").write_text("".join(_sts_line(i, s) for i, s in enumerate(train)))
    (tmp_path / "sts-dev.csv").write_text("".join(_sts_line(i, s) for i, s in enumerate(dev)))
    with pytest.raises(UserError, match=expected):
        load_dataset(DataConfig(name="sts", path=str(tmp_path), tokenizer=str(small_tokenizer), val_fraction=0.3))


def test_tokenizing_nothing_gives_empty_arrays(small_tokenizer):
    from edgedistill.data.tokenize import load_tokenizer, tokenize

    arrays = tokenize(load_tokenizer(small_tokenizer), [], 16)
    assert arrays and all(a.shape[0] == 0 and a.dtype == np.int64 for a in arrays.values())


# ---------------------------------------------------------------- 8. exit 3 where the input is at fault


def test_input_faults_that_crashed_are_user_errors(tmp_path, small_tokenizer):
    from edgedistill.data.text_files import read_labelled
    from edgedistill.data.tokenize import load_tokenizer
    from edgedistill.gate import load_report
    from edgedistill.recipe import load_recipe, parse_set

    with pytest.raises(UserError, match="integer of 5000 characters") as err:
        load_recipe(str(write(tmp_path / "big.yaml", RECIPE + "seed: " + "7" * 5000 + "\n")))
    assert err.value.where.endswith(":11")
    with pytest.raises(UserError, match="1000 levels deep"):
        parse_set([".".join(["a"] * 1000) + "=1"])
    deep = "[" * 50_000 + "]" * 50_000
    with pytest.raises(UserError, match="not valid JSON"):
        load_report(write(tmp_path / "report.json", deep), "CURRENT")
    with pytest.raises(UserError, match="not valid JSON"):  # under the parser's limit, over ours
        load_report(write(tmp_path / "report.json", json.dumps({"schema_version": 1, "x": [[[[[[[[[[[[]]]]]]]]]]]]} )
                          .replace("[]", "[" * 200 + "]" * 200)), "CURRENT")
    with pytest.raises(UserError, match="not valid JSON") as err:
        read_labelled(write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n' + deep + "\n"))
    assert err.value.where.endswith("d.jsonl:2")
    tok = tmp_path / "tok"
    tok.mkdir()
    for f in small_tokenizer.iterdir():
        (tok / f.name).write_bytes(f.read_bytes())
    (tok / "tokenizer.json").unlink()
    (tok / "tokenizer.json").symlink_to("/etc/hostname" if Path("/etc/hostname").exists() else "/etc/passwd")
    with pytest.raises(UserError, match="cannot load a tokenizer"):
        load_tokenizer(tok)


def _report(path: str, **deployed) -> dict:
    return {"schema_version": 1, "recipe": {"name": "t", "resolved": {"gates": {}}}, "task": "classification",
            "metric": {"name": "accuracy", "higher_is_better": True}, "targets": {},
            "models": {"deployed": {"path": path, "sha256": "0" * 64, "metric": 0.9, "size_mb": 1.0, "latency": {},
                                    **deployed}}}


@pytest.mark.parametrize(("field", "change"), [
    ("models.deployed.path", {"path": 5}),
    ("models.deployed.path", {"path": {"a": 1}}),
    ("models.deployed.sha256", {"sha256": 3.5}),
    ("models.deployed.latency.x86", {"latency": {"x86": [1, 2]}}),
    ("models.deployed.latency.x86.batch", {"latency": {"x86": {"batch": "four"}}}),
    ("models.deployed.latency.x86.threads", {"latency": {"x86": {"threads": -1}}}),
])
def test_report_fields_of_the_wrong_type_are_named(tmp_path, field, change):
    from edgedistill.gate import load_report

    doc = _report("bundle/model.onnx")
    doc["models"]["deployed"].update(change)
    with pytest.raises(UserError, match=field.replace(".", r"\.") + ":"):
        load_report(write(tmp_path / "report.json", json.dumps(doc)), "CURRENT")
    doc = _report("bundle/model.onnx")
    doc["recipe"]["resolved"]["gates"] = "distill"
    with pytest.raises(UserError, match=r"recipe\.resolved\.gates:"):
        load_report(write(tmp_path / "report.json", json.dumps(doc)), "CURRENT")


def test_a_deeply_nested_manifest_is_a_damaged_bundle(tmp_path):
    from edgedistill.report.bundle import verify_bundle

    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    ok, problems = verify_bundle(tmp_path)
    assert not ok and "manifest.json" in problems[0]


# ---------------------------------------------------------------- 11. smaller items


@pytest.mark.parametrize(("first", "second"), [("1", "0x1"), ("on", "yes"), ("true", "on"), ("~", "null"),
                                              ("1", "1.0"), ("07", "7")])
def test_duplicate_keys_spelled_differently_are_refused(first, second):
    from edgedistill.yamlsafe import load

    with pytest.raises(UserError, match=f'duplicate key "{second}"'):
        load(f"a:\n  {first}: x\n  {second}: y\n", "r.yaml")
    assert load(f"a:\n  '{first}': x\n  {second}: y\n", "r.yaml")["a"][first] == "x"  # a quoted key is a string


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\f", "\v", "\x1c", "\x85"])
def test_text_readers_split_lines_on_newlines_only(tmp_path, separator):
    from edgedistill.data.text_files import read_corpus, read_sts

    corpus = read_corpus(write(tmp_path / "c.txt", f"one{separator}still one\r\ntwo\n"))
    assert corpus == [f"one{separator}still one", "two"]
    pairs = read_sts(write(tmp_path / "s.csv", f"g\tf\t2012\t1\t2.5\tA man{separator}plays.\tA man plays.\n"
                                               "g\tf\t2012\t2\t1.0\tB.\tC.\r\n"))
    assert len(pairs) == 2 and pairs.first[0] == f"A man{separator}plays." and pairs.second[1] == "C."


def test_empty_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write(tmp_path / "r.yaml", RECIPE)
    result = CliRunner().invoke(cli, ["compress", "--recipe", str(recipe), "--out", ""])
    assert result.exit_code == 2 and "--out" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]  # nothing written in the current folder


@pytest.mark.slow  # one tiny real run (a 1-epoch digits CNN), then two tampered copies resumed
def test_tampered_stage_files_on_resume_are_bad_input(tmp_path):
    import shutil

    recipe = write(tmp_path / "r.yaml", RECIPE.replace("kind: distill\n    student: {name: cnn, channels: [4]}\n"
                                                       "    train: {epochs: 1}", "kind: export")
                   + "profile: {runs: 20, warmup: 2}\n")
    runner = CliRunner()
    run = tmp_path / "run"
    assert runner.invoke(cli, ["compress", "--recipe", str(recipe), "--out", str(run)]).exit_code == 0
    record = run / "stages" / "1-export" / "record.json"
    for i, (path, text) in enumerate([
            (record, json.dumps({**json.loads(record.read_text()), "onnx": "../../../../etc/passwd"})),
            (run / "stages" / "0-teacher" / "spec.json", "[" * 100_000)]):
        copy = tmp_path / f"copy{i}"
        shutil.copytree(run, copy)
        (copy / path.relative_to(run)).write_text(text)
        result = runner.invoke(cli, ["compress", "--recipe", str(recipe), "--out", str(copy), "--resume"])
        assert result.exit_code == 2 and path.name in result.output, result.output
        assert not (copy / "bundle" / "passwd").exists()
