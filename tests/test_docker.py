"""The Docker image, its build context, the Slurm script and their documentation,
checked statically: no Docker engine, GPU, cluster or network is needed.

The Dockerfile is read with a small parser (continuation lines joined, comment lines
dropped, one instruction per entry) and .dockerignore with Docker's own matching rules
(patterns cleaned, last match wins, ``!`` re-includes, a pattern that matches a parent
directory matches everything below it).
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SBATCH = ROOT / "scripts" / "slurm" / "train_imagenet.sbatch"
DOCS = ROOT / "docs" / "docker-and-clusters.md"


# --- Dockerfile ----------------------------------------------------------------------


def parse_dockerfile(text: str):
    """``[(INSTRUCTION, arguments), ...]`` in order: lines ending in a backslash are
    joined with the next, and comment lines are dropped (also inside a continued
    instruction, as Docker does)."""
    instructions = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        keyword, _, arguments = current.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, f"the Dockerfile ends inside a continued line: {current!r}"
    return instructions


def exec_form(arguments: str):
    """The JSON array of an exec-form instruction (ENTRYPOINT, CMD, VOLUME, SHELL)."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), arguments
    return value


def copy_sources(arguments: str):
    """The sources of a COPY (all words but the last, flags such as --chown left out)."""
    words = [word for word in shlex.split(arguments) if not word.startswith("--")]
    if arguments.lstrip().startswith("["):
        words = exec_form(arguments)
    return words[:-1]


@pytest.fixture(scope="module")
def instructions():
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def index_of(instructions, keyword, predicate=lambda arguments: True):
    for index, (name, arguments) in enumerate(instructions):
        if name == keyword and predicate(arguments):
            return index
    raise AssertionError(f"no {keyword} instruction found")


def pip_install_index(instructions):
    return index_of(instructions, "RUN", lambda arguments: "pip install" in arguments)


def test_parser_joins_continuations_and_skips_comments():
    text = 'FROM a\n# note\nRUN one \\\n    # inner comment\n    two\n\nENTRYPOINT ["x"]\n'
    assert parse_dockerfile(text) == [("FROM", "a"), ("RUN", "one      two"), ("ENTRYPOINT", '["x"]')]


def test_base_image_is_tensorflow_2_21_gpu(instructions):
    images = [arguments.split()[0] for name, arguments in instructions if name == "FROM"]
    assert len(images) == 1, images
    assert re.fullmatch(r"tensorflow/tensorflow:2\.21\.\d+-gpu", images[0]), images[0]


def test_bnno_is_installed_from_copied_source_and_not_editable(instructions):
    install = pip_install_index(instructions)
    command = instructions[install][1]
    copied = [
        pathlib.PurePosixPath(source).as_posix().rstrip("/")
        for name, arguments in instructions[:install] if name == "COPY"
        for source in copy_sources(arguments)
    ]
    for needed in ("setup.py", "README.md", "pyproject.toml", "bnno", "hparams"):
        assert needed in copied, f"{needed} is not copied before `pip install`: {copied}"
    pip_words = command[command.index("pip install"):].split(";")[0].split()
    assert "." in pip_words, command
    assert "-e" not in pip_words and "--editable" not in pip_words, command
    assert "--no-cache-dir" in pip_words
    # The image's TensorFlow is pinned so pip cannot replace it.
    assert "--constraint" in pip_words or "-c" in pip_words
    assert "tensorflow" in command


def test_runs_as_non_root_user_set_after_the_install(instructions):
    users = [(index, arguments) for index, (name, arguments) in enumerate(instructions) if name == "USER"]
    assert users, "no USER instruction"
    last_index, last_user = users[-1]
    assert last_user.split(":")[0] not in ("root", "0"), last_user
    assert pip_install_index(instructions) < last_index < index_of(instructions, "ENTRYPOINT")


def test_entrypoint_is_bnno_and_default_command_is_help(instructions):
    assert exec_form(instructions[index_of(instructions, "ENTRYPOINT")][1]) == ["bnno"]
    assert exec_form(instructions[index_of(instructions, "CMD")][1]) == ["--help"]


def test_data_and_logs_are_volumes_prepared_before_they_are_declared(instructions):
    volume = index_of(instructions, "VOLUME")
    assert {"/data", "/logs"} <= set(exec_form(instructions[volume][1]))
    # What a RUN changes in a directory after it became a VOLUME is discarded, so the
    # directories, their owner and the ~/bnno-logs link must come first.
    setup = index_of(instructions, "RUN", lambda arguments: "useradd" in arguments)
    assert setup < volume
    command = instructions[setup][1]
    assert "--uid 1000" in command
    assert re.search(r"mkdir -p /data /logs", command)
    assert re.search(r"chown \S+ /data /logs", command)
    assert re.search(r"ln -s /logs /home/bnno/bnno-logs", command)


def environment(instructions):
    values = {}
    for name, arguments in instructions:
        if name == "ENV":
            for word in shlex.split(arguments):
                key, _, value = word.partition("=")
                values[key] = value
    return values


def test_environment_points_tfds_and_the_default_output_prefix_at_the_volumes(instructions):
    from bnno.cli import train

    env = environment(instructions)
    assert env["TFDS_DATA_DIR"] == "/data"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    # `bnno train` without --output-dir writes under ~/bnno-logs, the link to /logs.
    prefix = next(param.default for param in train.params if param.name == "output_prefix")
    assert prefix == "~/bnno-logs"
    assert env["HOME"] == "/home/bnno"


def test_image_is_labelled(instructions):
    labels = " ".join(arguments for name, arguments in instructions if name == "LABEL")
    for key in ("source", "title", "description", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


# --- .dockerignore -------------------------------------------------------------------


def read_dockerignore(text: str):
    """``[(regex, is_exception, pattern), ...]`` following Docker's reading of the file:
    comments and blank lines skipped, patterns cleaned, a leading ``/`` dropped."""
    patterns = []
    for line in text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        exception = pattern.startswith("!")
        if exception:
            pattern = pattern[1:].strip()
        pattern = os.path.normpath(pattern).replace(os.sep, "/").lstrip("/")
        patterns.append((re.compile(translate(pattern)), exception, pattern))
    return patterns


def translate(pattern: str) -> str:
    """Docker's pattern syntax as a regex: ``*`` and ``?`` stop at ``/``, ``**`` does not,
    ``**/`` may also match nothing."""
    regex, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
            continue
        if pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            end = pattern.index("]", index)
            regex += pattern[index:end + 1]
            index = end
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            regex += re.escape(pattern[index])
        else:
            regex += re.escape(char)
        index += 1
    return "^" + regex + "$"


def is_excluded(patterns, path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, with ``/``) out of the build context."""
    parents = path.split("/")[:-1]
    excluded = False
    for regex, exception, _ in patterns:
        if exception != excluded:  # only a match can change the verdict
            continue
        match = bool(regex.match(path)) or any(
            regex.match("/".join(parents[: depth + 1])) for depth in range(len(parents))
        )
        if match:
            excluded = not exception
    return excluded


@pytest.fixture(scope="module")
def ignore_patterns():
    return read_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8"))


def test_dockerignore_matcher_follows_docker_rules():
    patterns = read_dockerignore("*\n!keep/\n**/__pycache__\n/tests/golden\n")
    assert is_excluded(patterns, "anything.txt")
    assert is_excluded(patterns, "deep/dir/file")
    assert not is_excluded(patterns, "keep/module.py")
    assert is_excluded(patterns, "keep/__pycache__/module.pyc")
    assert is_excluded(patterns, "__pycache__/x.pyc")
    assert not is_excluded(read_dockerignore("tests/golden\n"), "tests/test_x.py")
    assert is_excluded(read_dockerignore("tests/golden\n"), "tests/golden/larq_golden.npz")


def test_dockerignore_leaves_out_git_and_large_test_data(ignore_patterns):
    for path in (".git", ".git/config", "tests/golden/larq_golden.npz", "tests/test_cli.py",
                 "bnno.egg-info/PKG-INFO", "bnno/__pycache__/cli.cpython-311.pyc",
                 ".venv/bin/python", "logs/run/events", "docs/docker-and-clusters.md"):
        assert is_excluded(ignore_patterns, path), path


def test_dockerignore_keeps_everything_the_dockerfile_copies(instructions, ignore_patterns):
    sources = [source for name, arguments in instructions if name == "COPY"
               for source in copy_sources(arguments)]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY source {source} does not exist"
        assert not is_excluded(ignore_patterns, source.rstrip("/")), source
        if path.is_dir():
            files = [
                file.relative_to(ROOT).as_posix() for file in path.rglob("*")
                if file.is_file() and "__pycache__" not in file.parts
            ]
            assert files
            left_out = [file for file in files if is_excluded(ignore_patterns, file)]
            assert not left_out, f"{source}: .dockerignore leaves out {left_out}"
    # Among them what `pip install .` reads, including the packaged YAML sets.
    for needed in ("README.md", "setup.py", "pyproject.toml", "bnno/cli.py", "hparams/birealnet.yaml"):
        assert not is_excluded(ignore_patterns, needed), needed


# --- Slurm script --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sbatch_text():
    return SBATCH.read_text(encoding="utf-8")


def sbatch_options(text: str):
    options = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH"):
            for word in shlex.split(line[len("#SBATCH"):]):
                key, _, value = word.partition("=")
                options[key] = value
    return options


def test_sbatch_script_is_valid_bash(sbatch_text):
    result = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sbatch_text.startswith("#!/bin/bash")
    assert "set -euo pipefail" in sbatch_text


def test_sbatch_asks_for_several_nodes_one_task_each_with_all_their_gpus(sbatch_text):
    options = sbatch_options(sbatch_text)
    assert int(options["--nodes"]) > 1
    assert options["--ntasks-per-node"] == "1"
    assert int(options["--gpus-per-node"]) >= 1
    assert int(options["--cpus-per-task"]) >= 1
    assert "--time" in options


def test_sbatch_runs_bnno_train_in_a_slurm_step(sbatch_text):
    # `srun` makes one job step with one task per node: SlurmClusterResolver reads the
    # step's SLURM_PROCID, SLURM_STEP_NODELIST and SLURM_STEP_TASKS_PER_NODE.
    assert re.search(r"^\s*srun\b", sbatch_text, re.MULTILINE)
    assert "bnno train" in sbatch_text


def run_sbatch_with_fake_slurm(tmp_path, environment, bnno_exit=0, scontrol_exit=0):
    """Run the script as Slurm would on the first node of the allocation, with
    stand-ins for ``srun`` (drops its own options, runs the rest), ``bnno`` (exits with
    ``bnno_exit``) and ``scontrol`` (exits with ``scontrol_exit``) that record their
    arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    fakes = {
        "srun": 'while [[ $# -gt 0 && $1 == --* ]]; do shift; done\nexec "$@"\n',
        "bnno": f"exit {bnno_exit}\n",
        "scontrol": f"exit {scontrol_exit}\n",
    }
    for tool, body in fakes.items():
        (bin_dir / tool).write_text(
            f'#!/bin/bash\nprintf "%s\\n" "{tool} $*" >> "{record}"\n{body}', encoding="utf-8"
        )
        (bin_dir / tool).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_CPUS_PER_TASK": "32",
        "SLURM_GPUS_PER_NODE": "8",
        **environment,
    }
    bash = shutil.which("bash")  # found on our PATH, not the script's
    result = subprocess.run([bash, str(SBATCH)], capture_output=True, text=True, env=env, cwd=tmp_path)
    calls = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
    return result, calls


def test_sbatch_launches_the_papers_imagenet_command_through_srun(tmp_path):
    output_dir = tmp_path / "shared" / "birealnet-bop"
    result, calls = run_sbatch_with_fake_slurm(
        tmp_path, {"DATA_DIR": str(tmp_path / "tfds"), "OUTPUT_DIR": str(output_dir)}
    )
    assert result.returncode == 0, result.stderr
    srun = [call for call in calls if call.startswith("srun ")]
    bnno = [call for call in calls if call.startswith("bnno ")]
    assert len(srun) == 1 and len(bnno) == 1, calls
    assert "--ntasks-per-node=1" in srun[0] and "--cpus-per-task=32" in srun[0]
    words = shlex.split(bnno[0])
    assert words[:2] == ["bnno", "train"]
    assert words[2] == "birealnet"
    for option, value in (("--dataset", "imagenet2012"), ("--hparams-set", "bop"),
                          ("--data-dir", str(tmp_path / "tfds")), ("--output-dir", str(output_dir))):
        assert words[words.index(option) + 1] == value, (option, words)
    assert output_dir.is_dir()


def test_sbatch_trains_your_own_model_from_its_plugin_and_sets_in_every_runtime(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "my_models.py").write_text("# a plugin\n")
    (own / "my_sets.yaml").write_text("bop: {}\n")
    environment = {"MODEL": "my_net", "PLUGIN": "own/my_models.py", "HPARAMS_FILE": str(own / "my_sets.yaml"),
                   "DATA_DIR": str(tmp_path / "tfds"), "OUTPUT_DIR": str(tmp_path / "run")}
    result, calls = run_sbatch_with_fake_slurm(tmp_path, environment)
    assert result.returncode == 0, result.stderr
    [bnno] = [shlex.split(call) for call in calls if call.startswith("bnno ")]
    assert bnno[2] == "my_net"
    # Relative paths become absolute: the tasks on other nodes do not share the directory.
    assert bnno[bnno.index("--plugin") + 1] == str(own / "my_models.py")
    assert bnno[bnno.index("--hparams-file") + 1] == str(own / "my_sets.yaml")
    # A container sees the files' folder at the same path, mounted once for both files.
    (tmp_path / "pyxis").mkdir()
    result, calls = run_sbatch_with_fake_slurm(tmp_path / "pyxis", {**environment, "RUNTIME": "pyxis",
                                                                     "PLUGIN": str(own / "my_models.py"),
                                                                     "IMAGE": "bnno.sqsh"})
    assert result.returncode == 0, result.stderr
    [srun] = [shlex.split(call) for call in calls if call.startswith("srun ")]
    [mounts] = [word.split("=", 1)[1] for word in srun if word.startswith("--container-mounts=")]
    assert mounts.split(",") == [f"{tmp_path / 'tfds'}:{tmp_path / 'tfds'}", f"{tmp_path / 'run'}:{tmp_path / 'run'}",
                                 f"{own}:{own}"]


def test_sbatch_with_a_plugin_that_is_not_there_says_so(tmp_path):
    result, calls = run_sbatch_with_fake_slurm(tmp_path, {"MODEL": "my_net", "PLUGIN": str(tmp_path / "gone.py")})
    assert result.returncode == 2
    assert result.stderr.strip() == f"PLUGIN={tmp_path / 'gone.py'} is not a file."
    assert not [call for call in calls if call.startswith("srun ")]


def test_sbatch_asks_for_a_warning_signal_requeue_and_appending_logs(sbatch_text):
    options = sbatch_options(sbatch_text)
    # USR1 to the job step's tasks (the bnno workers), not "B:USR1" (only the batch shell).
    signal, _, seconds = options["--signal"].partition("@")
    assert signal == "USR1" and int(seconds) >= 60
    assert "--requeue" in options
    assert options["--open-mode"] == "append"


def test_sbatch_requeues_its_job_when_bnno_stops_for_a_signal(tmp_path):
    result, calls = run_sbatch_with_fake_slurm(tmp_path, {"OUTPUT_DIR": str(tmp_path / "out")}, bnno_exit=75)
    assert result.returncode == 0, result.stderr
    assert [call for call in calls if call.startswith("scontrol")] == ["scontrol requeue 42"]
    assert "requeueing job 42" in result.stdout


@pytest.mark.parametrize("bnno_exit", [0, 1])
def test_sbatch_passes_other_exit_statuses_through_without_requeue(tmp_path, bnno_exit):
    result, calls = run_sbatch_with_fake_slurm(tmp_path, {"OUTPUT_DIR": str(tmp_path / "out")}, bnno_exit=bnno_exit)
    assert result.returncode == bnno_exit, result.stderr
    assert any(call.startswith("bnno train") for call in calls)
    assert not [call for call in calls if call.startswith("scontrol")]


def test_sbatch_that_cannot_requeue_says_so_and_exits_75(tmp_path):
    result, calls = run_sbatch_with_fake_slurm(
        tmp_path, {"OUTPUT_DIR": str(tmp_path / "out")}, bnno_exit=75, scontrol_exit=1
    )
    assert result.returncode == 75
    assert "scontrol requeue 42" in calls
    assert "Could not requeue job 42: submit this script again" in result.stderr


def test_sbatch_without_bnno_says_what_to_do(tmp_path):
    # A PATH with only the one outside tool the script needs before it looks for bnno.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "mkdir").symlink_to(shutil.which("mkdir"))
    result, calls = run_sbatch_with_fake_slurm(
        tmp_path, {"OUTPUT_DIR": str(tmp_path / "out"), "PATH": str(tools)}
    )
    assert result.returncode != 0
    assert "BNNO_ENV" in result.stderr
    assert not calls


# --- commands in the documentation and the script ------------------------------------


def bnno_invocations(text: str):
    """``(subcommand, [words...])`` for each ``bnno SUBCOMMAND ...`` on one logical line
    (shell continuations joined), also after a ``docker run ... bnno`` image name."""
    from bnno.cli import cli

    logical = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in logical.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # prose with an apostrophe, not a command
            continue
        for index, word in enumerate(words[:-1]):
            if word == "bnno" and words[index + 1] in cli.commands:
                found.append((words[index + 1], words[index + 2:]))
    return found


def check_options_exist(invocations):
    from bnno.cli import cli

    for subcommand, words in invocations:
        known = {opt for param in cli.commands[subcommand].params for opt in param.opts + param.secondary_opts}
        known |= {"--help", "-h"}
        for word in words:
            if word in ("|", "&&", ";"):
                break
            if word.startswith("--"):
                option = word.split("=", 1)[0]
                assert option in known, f"`bnno {subcommand}` has no option {option}"


@pytest.fixture(scope="module")
def docs_text():
    return DOCS.read_text(encoding="utf-8")


def test_docs_show_build_run_and_cluster_commands(docs_text):
    assert "docker build -t bnno ." in docs_text
    assert "docker run --gpus all" in docs_text
    assert "srun" in docs_text
    assert "bnno train birealnet --dataset imagenet2012 --hparams-set bop" in docs_text
    assert "downloads/manual" in docs_text
    assert "--bind_all" in docs_text
    assert "scripts/slurm/train_imagenet.sbatch" in docs_text


def test_docs_explain_preemption_with_slurm_and_a_kubernetes_job(docs_text):
    import yaml

    for needed in ("--signal=USR1@120", "--requeue", "--open-mode=append", "scontrol requeue",
                   "--checkpoint-every", "75", "terminationGracePeriodSeconds"):
        assert needed in docs_text, needed
    snippets = re.findall(r"^```yaml\n(.*?)^```$", docs_text, re.MULTILINE | re.DOTALL)
    jobs = [doc for doc in map(yaml.safe_load, snippets) if doc.get("kind") == "Job"]
    assert len(jobs) == 1
    spec = jobs[0]["spec"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert pod["terminationGracePeriodSeconds"] > 30
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onExitCodes": {"containerName": pod["containers"][0]["name"],
                                                "operator": "In", "values": [75]}} in rules
    # The container runs bnno (the image's entrypoint) with options that exist.
    check_options_exist([(pod["containers"][0]["args"][0], pod["containers"][0]["args"][1:])])


def test_commands_in_docs_and_script_use_existing_options(docs_text, sbatch_text):
    documented = bnno_invocations(docs_text)
    assert {"train", "prepare"} <= {subcommand for subcommand, _ in documented}
    check_options_exist(documented)
    # The script builds its command as a bash array: train=(bnno train ...).
    array = re.search(r"^train=\((.*?)\)$", sbatch_text, re.MULTILINE | re.DOTALL)
    words = shlex.split(array.group(1))
    assert words[:2] == ["bnno", "train"]
    check_options_exist([("train", words[2:])])
    extra = re.findall(r"^\s*train\+=\((.*?)\)$", sbatch_text, re.MULTILINE)
    check_options_exist([("train", shlex.split(words)) for words in extra])


def test_default_model_and_set_of_the_script_exist(sbatch_text):
    from bnno import hparams

    model = re.search(r'MODEL="\$\{MODEL:-([a-z_]+)\}"', sbatch_text).group(1)
    hparams_set = re.search(r'SET="\$\{SET:-([a-z_]+)\}"', sbatch_text).group(1)
    assert hparams_set in hparams.set_names(model)


# --- optional linters: used when installed, never required ---------------------------


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_hadolint_finds_nothing():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing():
    result = subprocess.run(["shellcheck", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
