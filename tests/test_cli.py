import pytest

from gear_core.cli import main


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
    assert "is not UTF-8 text" in err and err.count("\n") == 1


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
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["info", str(model)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is damaged" in err and err.count("\n") == 1
    (model / "checksums.sha256").unlink()
    (model / "config.json").write_text("{not json", encoding="utf-8")
    assert main(["info", str(model)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and err.count("\n") == 1


def test_highlight_document_and_top_n(tmp_path, capsys):
    document = "The tower is in Paris. It was finished in 1889. It is made of iron. Many people visit it."
    assert main(["highlight", "gear-minilm", "--query", "when was it finished", "--document", document]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].endswith("(23:47) It was finished in 1889.")  # three by default
    assert (
        main(["highlight", "gear-minilm", "--query", "when was it finished", "--document", document, "--top-n", "1"])
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [lines[0]]
    with pytest.raises(SystemExit) as exit_code:
        main(["highlight", "gear-minilm", "--query", "q", "--document", document, "--top-n", "0"])
    assert exit_code.value.code == 2 and "expected a positive integer, got 0" in capsys.readouterr().err


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
