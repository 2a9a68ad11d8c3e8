from pathlib import Path

import pytest

from gear_core.cli import main
from gear_core.folders import write_model_checksums


def test_init_info_and_highlight(tiny_encoder_dir, tmp_path, capsys):
    out = tmp_path / "gear"
    tiny = ["--decoder-layers", "1", "--ranking-layer", "-1"]
    assert main(["init", tiny_encoder_dir, str(out), "--shared-encoder", *tiny]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert '"document_encoder": 0' in capsys.readouterr().out
    document = tmp_path / "doc.txt"
    document.write_text("First sentence here. Second one there.", encoding="utf-8")
    assert main(["highlight", str(out), "--query", "second", "--file", str(document), "--generate"]) == 0
    printed = capsys.readouterr().out
    assert "(0:20) First sentence here." in printed or "(21:38) Second one there." in printed
    assert "evidence:" in printed


def test_highlight_reports_a_missing_file(tiny_encoder_dir, tmp_path, capsys):
    out = tmp_path / "gear"
    assert main(["init", tiny_encoder_dir, str(out), "--decoder-layers", "1", "--ranking-layer", "-1"]) == 0
    assert main(["highlight", str(out), "--query", "q", "--file", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_export_writes_small_fp16_shards_that_load_as_float32(tiny_model, tmp_path, capsys):
    import torch
    from safetensors import safe_open

    from gear_core import GeARModel

    tiny_model.save_pretrained(tmp_path / "trained")
    out = tmp_path / "release"
    code = main(
        ["export", str(tmp_path / "trained"), str(out), "--max-shard-size", "1MB", "--set", "ranking_query_pooling=max"]
    )
    assert code == 0 and "float16" in capsys.readouterr().out
    shards = sorted(out.glob("*.safetensors"))
    assert len(shards) > 1 and not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    for shard in shards:
        with safe_open(shard, "pt") as f:
            names = list(f.keys())
            assert {f.get_tensor(k).dtype for k in names} == {torch.float16}
        # a shard stays under the limit unless it holds a single tensor larger than the limit
        assert shard.stat().st_size <= 1_000_000 + 10_000 or len(names) == 1

    loaded = GeARModel.from_pretrained(out)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert loaded.config.ranking_query_pooling == "max"
    for name, tensor in tiny_model.state_dict().items():  # the fp16 round trip loses only fp16 precision
        torch.testing.assert_close(loaded.state_dict()[name], tensor.half().float(), msg=name)


def test_export_refuses_an_unknown_or_invalid_setting(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "trained")
    assert main(["export", str(tmp_path / "trained"), str(tmp_path / "a"), "--set", "no_such_field=1"]) == 2
    assert "no field" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trained"]  # no half-written output folder
    assert main(["export", str(tmp_path / "trained"), str(tmp_path / "b"), "--set", "ranking_query_pooling=x"]) == 2
    assert "ranking_query_pooling" in capsys.readouterr().err


def test_a_wrong_model_name_or_a_binary_file_is_one_line_and_exit_code_2(tiny_encoder_dir, tmp_path, capsys):
    model = tmp_path / "gear"
    assert main(["init", tiny_encoder_dir, str(model), "--decoder-layers", "1", "--ranking-layer", "-1"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "no-such-model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gear: no GeAR model at") and err.count("\n") == 1
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    assert main(["highlight", str(model), "--query", "q", "--file", str(binary)]) == 2
    err = capsys.readouterr().err
    assert "is a binary file" in err and err.count("\n") == 1


def test_gear_minilm_names_the_shipped_model_when_no_such_folder_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./gear-minilm here
    document = "The tower is in Paris. It was finished in 1889."
    assert main(["highlight", "gear-minilm", "--query", "when was it finished", "--document", document]) == 0
    assert "(23:47) It was finished in 1889." in capsys.readouterr().out


def test_a_damaged_model_is_one_line_and_exit_code_2(tiny_encoder_dir, tmp_path, capsys):
    model = tmp_path / "gear"
    assert main(["init", tiny_encoder_dir, str(model), "--decoder-layers", "1", "--ranking-layer", "-1"]) == 0
    capsys.readouterr()
    weights = model / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["info", str(model)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is damaged" in err and err.count("\n") == 1
    weights.write_bytes(original)
    (model / "checksums.sha256").unlink()
    assert main(["info", str(model)]) == 2
    assert "records no checksums" in one_line_error(capsys)
    (model / "config.json").write_text("{not json", encoding="utf-8")
    write_model_checksums(model)  # changed on purpose: its checksums recorded again, it reaches the parser
    assert main(["info", str(model)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and err.count("\n") == 1


def test_highlight_document_and_top_n(tmp_path, capsys):
    document = "The tower is in Paris. It was finished in 1889. It is made of iron. Many people visit it."
    query = ["highlight", "gear-minilm", "--query", "when was it finished", "--document", document, "--no-generate"]
    assert main(query) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].endswith("(23:47) It was finished in 1889.")  # three by default
    assert main([*query, "--top-n", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [lines[0]]
    with pytest.raises(SystemExit) as exit_code:
        main(["highlight", "gear-minilm", "--query", "q", "--document", document, "--top-n", "0"])
    assert exit_code.value.code == 2 and "expected a positive integer, got 0" in capsys.readouterr().err


def test_highlight_writes_the_shipped_span_readers_evidence_by_default(capsys):
    """The README's `gear highlight` line: the answer with its span, or a plain word that there is none."""
    document = "The tower is in Paris. It was finished in 1889."
    assert main(["highlight", "gear-minilm", "--query", "when was it finished", "--document", document]) == 0
    evidence = capsys.readouterr().out.splitlines()[-1]
    assert evidence.startswith("evidence: [") and evidence.endswith("] (42:46) 1889") and document[42:46] == "1889"
    assert (
        main(["highlight", "gear-minilm", "--query", "what is the capital of Australia?", "--document", document]) == 0
    )
    assert capsys.readouterr().out.splitlines()[-1].endswith("(no answer in this document)")


def test_model_names_resolve_in_one_place_without_a_hub(tmp_path, monkeypatch):
    """None / "default" / "gear-minilm" are the shipped model; any other name must be a GeAR folder, and what is
    there instead is said (a typo never reaches a model hub)."""
    import json

    import gear_core
    from gear_core.loading import ModelNotFoundError, resolve_model_path

    monkeypatch.chdir(tmp_path)
    for name in (None, "default", "gear-minilm"):
        assert resolve_model_path(name) == gear_core.DEFAULT_MODEL
    with pytest.raises(ModelNotFoundError, match="not a folder"):
        resolve_model_path("sentence-transformers/all-MiniLM-L6-v2x")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelNotFoundError, match="holds a 'bert' model, not a GeAR model"):
        resolve_model_path(tmp_path / "bert")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"without config\.json"):
        resolve_model_path("empty")


def test_init_and_export_never_replace_a_folder_by_surprise(tiny_encoder_dir, tmp_path, capsys):
    """The README's quickstart saved a model to the name that `gear init` then overwrote with an untrained one."""
    out = tmp_path / "gear"
    tiny = ["--decoder-layers", "1", "--ranking-layer", "-1"]
    assert main(["init", tiny_encoder_dir, str(out), *tiny]) == 0
    config = (out / "config.json").read_text()
    assert main(["init", tiny_encoder_dir, str(out), *tiny, "--shared-encoder"]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert (out / "config.json").read_text() == config
    assert main(["export", str(out), str(out)]) == 2
    assert main(["init", tiny_encoder_dir, str(out), *tiny, "--shared-encoder", "--overwrite"]) == 0
    assert '"shared_encoder": true' in (out / "config.json").read_text()
    (tmp_path / "empty").mkdir()
    assert main(["export", str(out), str(tmp_path / "empty")]) == 0  # an empty folder is fine


def test_export_over_a_model_folder_keeps_its_model_card(tiny_encoder_dir, tmp_path, capsys):
    """Shipping a new model with `gear export ... --overwrite` deleted the shipped folder's README.md (its card)."""
    source, out = tmp_path / "source", tmp_path / "shipped"
    tiny = ["--decoder-layers", "1", "--ranking-layer", "-1"]
    assert main(["init", tiny_encoder_dir, str(source), *tiny]) == 0
    assert main(["export", str(source), str(out), "--dtype", "int8"]) == 0
    (out / "README.md").write_text("# The card\n", encoding="utf-8")
    (out / "model-00009-of-00009.safetensors").write_bytes(b"stale")  # the model's own name: not carried over
    assert main(["export", str(source), str(out), "--dtype", "int8", "--overwrite"]) == 0
    assert (out / "README.md").read_text(encoding="utf-8") == "# The card\n"
    assert not (out / "model-00009-of-00009.safetensors").exists()
    from gear_core import GeARModel

    GeARModel.from_pretrained(str(out))  # the checksums hold: the card is not among the model's files


def test_output_into_a_pipe_that_closes_early_is_not_an_error():
    """`gear info MODEL | head -1` printed a BrokenPipeError traceback."""
    import subprocess
    import sys

    result = subprocess.run(
        f"{sys.executable} -m gear_core.cli info gear-minilm | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "{\n" and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


# Issue 31, points 3, 4 and 9: exact offsets from a file, `gear init` on a GeAR folder, quick one-line errors.
CRLF = b"Intro line here.\r\nThe tower is in Paris.\r\nIt was finished in 1889.\r\nIt is tall."


@pytest.fixture
def gear_dir(tiny_model, tmp_path) -> str:
    tiny_model.save_pretrained(tmp_path / "gear")
    return str(tmp_path / "gear")


def one_line_error(capsys) -> str:
    """The one line of an error on stderr (transformers' progress bars, redrawn with \\r, aside)."""
    lines = [line for line in capsys.readouterr().err.split("\n") if line and "\r" not in line]
    assert len(lines) == 1 and lines[0].startswith("gear"), lines
    return lines[0]


def test_highlight_offsets_index_the_file_itself_crlf_included(gear_dir, tmp_path, capsys):
    """read_text turned CRLF into LF: `(40:64) It was finished in 1889.` while file[40:64] began with \\r\\n."""
    import re

    document = tmp_path / "crlf.txt"
    document.write_bytes(CRLF)
    assert (
        main(["highlight", gear_dir, "--query", "when was it finished", "--file", str(document), "--top-n", "4"]) == 0
    )
    printed = capsys.readouterr().out
    assert "(42:66) It was finished in 1889." in printed
    spans = re.findall(r"\((\d+):(\d+)\) (.*)", printed)
    assert len(spans) == 4
    for start, end, sentence in spans:
        assert CRLF.decode("utf-8")[int(start) : int(end)] == sentence


def test_highlight_notes_a_query_that_does_not_look_english(gear_dir, capsys):
    """German, French and Chinese questions got confident scores and no word that the model is English-only."""
    document = ["--document", "Leonardo painted the Mona Lisa. It hangs in the Louvre."]
    assert main(["highlight", gear_dir, "--query", "Wer hat die Mona Lisa gemalt?", *document]) == 0
    assert "gear: note: this question does not look English" in capsys.readouterr().err
    assert main(["highlight", gear_dir, "--query", "Who painted the Mona Lisa?", *document]) == 0
    assert "English" not in capsys.readouterr().err


def test_init_refuses_a_gear_folder_a_missing_encoder_and_a_negative_decoder(gear_dir, tmp_path, capsys):
    """`gear init GEAR_FOLDER OUT` exited 0 with random weights; the others were tracebacks."""
    out = tmp_path / "out"
    assert main(["init", gear_dir, str(out)]) == 2
    err = one_line_error(capsys)
    assert f"{gear_dir} is already a GeAR model" in err and f"gear export {gear_dir} OUT" in err
    assert main(["init", "/nonexistent", str(out)]) == 2
    assert "no such encoder folder: /nonexistent" in one_line_error(capsys)
    with pytest.raises(SystemExit) as exit_code:
        main(["init", "/nonexistent", str(out), "--decoder-layers", "-1"])  # refused while parsing
    assert exit_code.value.code == 2
    assert "--decoder-layers: expected a non-negative integer, got -1" in one_line_error(capsys)
    assert not out.exists()


def test_export_refuses_a_bad_shard_size_and_never_leaves_a_half_written_folder(
    gear_dir, tmp_path, capsys, monkeypatch
):
    from gear_core import GeARModel

    out = tmp_path / "release"
    with pytest.raises(SystemExit) as exit_code:
        main(["export", gear_dir, str(out), "--max-shard-size", "abc"])
    assert exit_code.value.code == 2
    assert "--max-shard-size: expected a size such as 15MB" in one_line_error(capsys)
    assert not out.exists()

    def save_half(model, folder, **options) -> None:
        (folder / "config.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(GeARModel, "save_pretrained", save_half)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(OSError, match="No space left"):
        main(["export", gear_dir, str(out), "--max-shard-size", "1.5MB"])
    assert sorted(tmp_path.iterdir()) == before  # neither OUT nor a temporary folder beside it
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OSError, match="No space left"):
        main(["export", gear_dir, str(out), "--overwrite"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # a failed --overwrite leaves OUT as it was


def test_highlight_says_what_is_wrong_with_its_input_before_loading_a_model(tmp_path, capsys):
    def highlight(*source: str, query: str = "q") -> int:
        return main(["highlight", str(tmp_path / "never-loaded"), "--query", query, *source])

    for source, query, message in (
        (["--document", ""], "q", "argument --document: is empty"),
        (["--document", "Text."], " ", "argument --query: is empty"),
    ):
        with pytest.raises(SystemExit) as exit_code:
            highlight(*source, query=query)
        assert exit_code.value.code == 2 and message in one_line_error(capsys)
    (tmp_path / "empty.txt").write_text(" \n")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9.".encode("latin-1"))
    for path, message in (
        (tmp_path, f"{tmp_path} is a folder"),
        ("/dev/null", "/dev/null is a character device"),
        (tmp_path / "empty.txt", "empty.txt is empty"),
        (tmp_path / "latin1.txt", "latin1.txt is not UTF-8 text"),
    ):
        assert highlight("--file", str(path)) == 2
        assert message in one_line_error(capsys)


def test_a_damaged_config_or_tokenizer_is_one_line_naming_the_model(gear_dir, capsys):
    folder = Path(gear_dir)
    (folder / "tokenizer.json").write_text("{", encoding="utf-8")
    write_model_checksums(folder)  # changed on purpose: its checksums recorded again, it reaches the parser
    assert main(["info", gear_dir]) == 2
    assert gear_dir in one_line_error(capsys)


def test_eval_and_synthesize_name_an_input_file_that_is_not_json(tmp_path, capsys):
    """The SQuAD file was a traceback in `gear eval` and an error naming no file in `gear synthesize`; a damaged
    wiki file was a traceback after the encoder loaded."""
    bad = tmp_path / "bad.json"
    bad.write_text("not json\n")
    split = tmp_path / "split.json"
    split.write_text('{"train": [], "test": []}')
    args = ["--squad", str(bad), "--split-file", str(split), "--no-wiki", "--no-nq", "--tasks", "local"]
    assert main(["eval", str(tmp_path / "never-loaded"), *args]) == 2
    assert f"{bad} is not valid JSON" in one_line_error(capsys)
    out = tmp_path / "triples.jsonl"
    assert main(["synthesize", "--squad", str(bad), "--split", str(split), "--no-filter", "--out", str(out)]) == 2
    assert f"{bad} is not valid JSON" in one_line_error(capsys)
    assert main(["synthesize", "--wiki", str(bad), "--no-filter", "--out", str(out), "--no-progress"]) == 2
    assert str(bad) in one_line_error(capsys)
    assert not out.exists()


def test_parsing_arguments_imports_nothing_heavy():
    """`gear --help` took 10-29 s: torch, transformers and faiss loaded before the arguments were parsed, first by
    the CLI's modules, then by `import gear_core` itself (its public names now load on first use)."""
    import subprocess
    import sys

    script = """
import sys
before = set(sys.modules)
import gear_core
assert gear_core.DEFAULT_MODEL
from gear_core.cli import main
for argv in (["--help"], ["highlight", "--help"], ["init", "a", "b", "--decoder-layers", "-1"], ["export", "a"]):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = ("torch", "transformers", "lightning", "faiss", "llama_index", "datasets", "bm25s")
print(sorted(name for name in set(sys.modules) - before if name.split(".")[0] in heavy))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "[]"


def test_the_package_loads_its_names_on_first_use_and_registers_them_with_transformers():
    import subprocess
    import sys

    script = """
import sys
import gear_core
assert "torch" not in sys.modules and "transformers" not in sys.modules
from transformers import AutoConfig, AutoModel
from gear_core import GeARModel
model = AutoModel.from_pretrained(gear_core.DEFAULT_MODEL)
config = AutoConfig.from_pretrained(gear_core.DEFAULT_MODEL)
assert type(model) is GeARModel and isinstance(config, gear_core.GeARConfig)
assert {"GeARModel", "split_sentences"} <= set(dir(gear_core))
try:
    gear_core.NoSuchName
except AttributeError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "module 'gear_core' has no attribute 'NoSuchName'"
