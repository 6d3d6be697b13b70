"""`twinpipe compile`'s images and placeholders: one image per stack (--tfx-image,
--torch-image; --image only with one --stack), and a WARNING block on stderr listing each
placeholder left in the specs with the flag that replaces it (exit 0 all the same)."""

import pytest

from infra.cli import build_parser, main
from pipelines.compile import load_compiled, placeholder_warning, placeholders, stack_images


def _args(*flags: str):
    return build_parser().parse_args(["compile", *flags])


def test_image_with_both_stacks_is_a_usage_error_naming_the_per_stack_flags(tmp_path, capsys):
    assert main(["compile", "--stack", "both", "--image", "r/x:1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tfx-image" in err[0] and "--torch-image" in err[0]
    assert not list(tmp_path.iterdir())
    assert main(["compile", "--stack", "tfx", "--image", "r/a:1", "--tfx-image", "r/b:1",
                 "--out", str(tmp_path)]) == 2


def test_each_stack_gets_its_own_image():
    assert stack_images(_args("--tfx-image", "r/t:1", "--torch-image", "r/p:1")) == \
        {"tfx": "r/t:1", "torch": "r/p:1"}
    assert stack_images(_args("--stack", "torch", "--image", "r/p:2")) == {"torch": "r/p:2"}
    assert stack_images(_args("--stack", "tfx")) == {"tfx": "twinpipe-tfx:latest"}


def test_placeholders_name_each_default_and_its_flag():
    found = {value: flag for value, _, flag in placeholders(_args("--target", "vertex",
                                                                  "--beam-runner", "direct"))}
    assert found["twinpipe-tfx:latest"].startswith("--tfx-image ")
    assert found["twinpipe-torch:latest"].startswith("--torch-image ")
    assert found["gs://twinpipe-artifacts/data"].startswith("--data-root ")
    assert found["gs://twinpipe-artifacts/pipeline_root"].startswith("--pipeline-root ")
    assert found["(none)"] == "--project PROJECT_ID"
    real = _args("--project", "p", "--tfx-image", "eu-docker.pkg.dev/p/r/twinpipe-tfx:1",
                 "--torch-image", "eu-docker.pkg.dev/p/r/twinpipe-torch:1")
    assert placeholders(real) == [] and placeholder_warning([]) == ""
    partial = placeholders(_args("--data-root", "gs://b/data", "--pipeline-root", "gs://b/r",
                                 "--stack", "torch", "--image", "localimage:1"))
    assert [v for v, _, _ in partial] == ["localimage:1"]


@pytest.mark.parametrize("flags, warned", [
    ((), ["twinpipe-torch:latest", "gs://twinpipe-artifacts/data", "--torch-image"]),
    (("--torch-image", "reg.example/p/twinpipe-torch:1", "--data-root", "gs://b/data",
      "--pipeline-root", "gs://b/root"), []),
])
def test_compile_prints_the_warning_block_on_stderr_and_exits_0(flags, warned, tmp_path, capsys):
    assert main(["compile", "--stack", "torch", "--out", str(tmp_path), *flags]) == 0
    out, err = capsys.readouterr()
    assert "compiled " in out and "WARNING" not in out
    if warned:
        assert err.splitlines()[0].startswith("=====") and "WARNING: " in err
        assert all(w in err for w in warned)
    else:
        assert "WARNING" not in err
        spec = load_compiled(tmp_path / "torch-kfp.yaml")[0]
        assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
                if "container" in e} == {"reg.example/p/twinpipe-torch:1"}
