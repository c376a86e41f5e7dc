"""Loading and validating ``rally.yml``: every refusal points at file:line:col and
the key path, and says what to do; nothing but ``ConfigError`` ever escapes."""

from __future__ import annotations

import io
import json
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from rally_gh.cli import cli
from rally_gh.config import (
    MAX_CONFIG_BYTES,
    AgentSpec,
    Config,
    ConfigInvalid,
    LoadedConfig,
    Teammate,
    find_config,
    json_schema,
    load_config,
    load_config_text,
    parse_duration,
)
from rally_gh.errors import ConfigError, UsageError
from rally_gh.testing import SAMPLE_MAP


def load(text: str) -> LoadedConfig:
    return load_config_text(textwrap.dedent(text))


def refusal(text: str | bytes, filename: str = "rally.yml") -> ConfigInvalid:
    """The error a map is refused with; checks that it reads as a message, not a crash."""
    source = textwrap.dedent(text) if isinstance(text, str) else text
    with pytest.raises(ConfigInvalid) as info:
        load_config_text(source, filename)
    err = info.value
    message = str(err)
    assert "Traceback" not in message and "pydantic" not in message and "errors.pydantic.dev" not in message
    assert err.problems and all(p.severity == "error" for p in err.problems)
    assert message.count("\n") + 1 == len(err.problems)
    return err


def lines(text: str | bytes) -> list[str]:
    return str(refusal(text)).splitlines()


def one_line(text: str | bytes) -> str:
    found = lines(text)
    assert len(found) == 1, found
    return found[0]


def team(*teammates: str, top: str = "") -> str:
    """A map around teammate blocks written at column 5 (``  - name: ...``)."""
    return "team: demo\n" + top + "teammates:\n" + "".join(teammates)


def mate(name: str, extra: str = "", owns: str = "[src/{name}/**]") -> str:
    block = f"  - name: {name}\n    exclusive_write: {owns.format(name=name)}\n"
    return block + "".join(f"    {line}\n" for line in extra.splitlines())


# --- Maps that load ---------------------------------------------------------


def test_sample_map_loads_with_defaults() -> None:
    loaded = load_config_text(SAMPLE_MAP)
    config = loaded.config
    assert [t.name for t in config.teammates] == ["api", "web"]
    web = config.teammate("web")
    assert web.blocked_by == ("api",)
    assert config.timeout_of(web) == 20 * 60
    assert config.retries_of(web) == 1
    assert config.checkout_of(web) == "full"
    assert config.agent_of(web).command == ("true",)
    assert config.defaults.agent.preset == "claude"
    assert config.branch_prefix == "rally" and config.max_parallel == 4
    assert loaded.path is None


def test_spec_example_loads() -> None:
    loaded = load("""\
        version: 1
        team: checkout-revamp
        base: main
        branch_prefix: rally
        max_parallel: 4
        defaults:
          agent: {preset: claude}
          timeout: 20m
          retries: 1
        budget: {max_cost_usd: 25, max_minutes: 90}
        merge:
          order: dependency
          on_conflict: skip
          verify: ["pytest -q"]
        teammates:
          - name: schema
            exclusive_write: [src/models/**]
          - name: api
            role: Backend implementation
            task: |
              Implement the /orders endpoint described in the issue.
            exclusive_write: [src/api/**, tests/api/, "!src/api/generated/**"]
            read: [src/models/**]
            blocked_by: [schema]
            agent: {preset: codex}
            timeout: 15m
            verify: ["pytest tests/api -q"]
            done_when: [tests/api/test_orders.py]
        """)
    config = loaded.config
    api = config.teammate("api")
    assert api.timeout == 15 * 60 and config.defaults.timeout == 20 * 60
    assert api.exclusive_write[-1] == "!src/api/generated/**"
    assert api.task == "Implement the /orders endpoint described in the issue.\n"
    assert config.budget.max_cost_usd == 25.0 and config.merge.verify == ("pytest -q",)
    assert config.agent_of(config.teammate("schema")).preset == "claude"


def test_positions_of_nested_keys_and_list_items() -> None:
    loaded = load("""\
        # the ownership map
        version: 1
        team: demo
        defaults:
          agent: {preset: claude}
        teammates:
          - name: api
            exclusive_write:
              - src/api/**
              - "!src/api/gen/**"
            read: [src/models/**, docs/]
          - name: web
            exclusive_write: [src/web/**]
            agent:
              preset: command
              command: [./bot, --fast]
        """)
    expected = {
        (): (2, 1),
        ("version",): (2, 1),
        ("team",): (3, 1),
        ("defaults",): (4, 1),
        ("defaults", "agent"): (5, 3),
        ("defaults", "agent", "preset"): (5, 11),
        ("teammates",): (6, 1),
        ("teammates", 0): (7, 5),
        ("teammates", 0, "name"): (7, 5),
        ("teammates", 0, "exclusive_write"): (8, 5),
        ("teammates", 0, "exclusive_write", 0): (9, 9),
        ("teammates", 0, "exclusive_write", 1): (10, 9),
        ("teammates", 0, "read"): (11, 5),
        ("teammates", 0, "read", 0): (11, 12),
        ("teammates", 0, "read", 1): (11, 27),
        ("teammates", 1, "exclusive_write", 0): (13, 23),
        ("teammates", 1, "agent", "preset"): (15, 7),
        ("teammates", 1, "agent", "command", 1): (16, 24),
    }
    for path, (line, column) in expected.items():
        location = loaded.locate(*path)
        assert (location.line, location.column) == (line, column), path
        assert location.file == "rally.yml"
    # An unwritten key is located at its nearest written ancestor.
    assert str(loaded.locate("teammates", 1, "timeout")) == "rally.yml:12:5"


def test_shell_command_is_one_string() -> None:
    loaded = load(team(mate("a", "agent: {command: make agent && ./run, shell: true}")))
    assert loaded.config.teammates[0].agent == AgentSpec(preset="command", command=("make agent && ./run",), shell=True)


def test_python_callers_may_give_timeouts_in_seconds() -> None:
    t = Teammate(name="a", exclusive_write=("a",), timeout=1.5)
    assert t.timeout == 1.5
    assert Teammate(name="b", exclusive_write=("b",), timeout="2m").timeout == 120


@pytest.mark.parametrize(("text", "seconds"), [
    ("45s", 45), ("20m", 1200), ("1h30m", 5400), ("2h", 7200), ("1.5h", 5400), ("0.5s", 0.5), ("1h2m3s", 3723),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert load(team(mate("a", f"timeout: {text}"))).config.teammates[0].timeout == seconds


# --- Finding the map --------------------------------------------------------


def test_find_config_prefers_the_root(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "rally.yml").write_text(SAMPLE_MAP)
    assert find_config(tmp_path) == tmp_path / ".github" / "rally.yml"
    (tmp_path / "rally.yml").write_text(SAMPLE_MAP)
    assert find_config(tmp_path) == tmp_path / "rally.yml"
    other = tmp_path / "other.yml"
    other.write_text(SAMPLE_MAP)
    assert find_config(tmp_path, other) == other


def test_find_config_names_both_places_and_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:  # a missing file is the user's mistake: exit 2
        find_config(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "rally.yml") in message and str(tmp_path / ".github/rally.yml") in message
    assert "rally-gh init" in message and "docs/rally-yml.md" in message
    with pytest.raises(UsageError, match="--config .*nope.yml: no such file"):
        find_config(tmp_path, tmp_path / "nope.yml")


def test_load_config_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rally.yml").write_text(SAMPLE_MAP + "bogus: 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "rally.yml")
    assert str(info.value).startswith("rally.yml:15:1: bogus: unknown key 'bogus'")
    (tmp_path / "rally.yml").write_text(SAMPLE_MAP)
    loaded = load_config(tmp_path / "rally.yml")
    assert loaded.path == tmp_path / "rally.yml"
    with pytest.raises(UsageError, match="cannot read"):
        load_config(tmp_path)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "rally.yml"
    with big.open("w") as fh:
        fh.write(SAMPLE_MAP)
        fh.write("# padding\n" * 2_000_000)  # 20 MB
    started = time.monotonic()
    with pytest.raises(ConfigInvalid, match=r"20\.0 MB; the limit is 1024 KiB"):
        load_config(big, "rally.yml")
    with pytest.raises(ConfigInvalid, match="the limit is"):
        load_config_text(big.read_bytes())
    assert time.monotonic() - started < 2


def test_just_under_the_size_cap_loads() -> None:
    padding = "# padding\n" * ((MAX_CONFIG_BYTES - len(SAMPLE_MAP)) // 10 - 1)
    assert load_config_text(SAMPLE_MAP + padding).config.team == "sample"


def test_thousands_of_teammates_load_quickly() -> None:
    """A map imported from a large CODEOWNERS file has hundreds of teammates: it
    loads and validates; only a run refuses teams of 10 or more (plan.assess)."""
    text = team(*(mate(f"t{i}") for i in range(2000)))
    started = time.monotonic()
    assert len(load(text).config.teammates) == 2000
    assert time.monotonic() - started < 20


# --- YAML itself ------------------------------------------------------------


def test_empty_file() -> None:
    assert one_line("") == ("rally.yml:1:1: the map is empty; it needs at least team: and teammates: "
                            "(see https://github.com/rally-gh/rally-gh/blob/v0.1.0/docs/rally-yml.md)")
    assert one_line("# only a comment\n").startswith("rally.yml:1:1: the map is empty")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "the value 'just text'")])
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    assert one_line(text) == (
        f"rally.yml:1:1: the top level must be a mapping of keys (version, team, teammates, ...), not {kind}")


def test_yaml_syntax_error_points_at_the_problem() -> None:
    assert one_line("team: demo\nteammates:\n  - name: [a\n") == (
        "rally.yml:4:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)")
    assert one_line("team: demo\n  bad: indent\n").startswith("rally.yml:2:3: wrong indentation: 'bad: indent'")


def test_tabs_for_indentation() -> None:
    assert one_line("team: demo\nteammates:\n\t- name: a\n") == (
        "rally.yml:3:1: YAML syntax error: found character '\\t' that cannot start any token "
        "(while scanning for the next token); indent with spaces: YAML does not allow tabs there")


def test_non_utf8_bytes() -> None:
    assert one_line(b"team: demo\nteammates:\n  - name: caf\xe9\n") == (
        "rally.yml:3:14: not valid UTF-8 (byte 0xe9); save the file as UTF-8")


def test_utf8_byte_order_mark_is_fine() -> None:
    assert load_config_text(b"\xef\xbb\xbf" + SAMPLE_MAP.encode()).config.team == "sample"


def test_control_character() -> None:
    assert one_line("team: de\x07mo\n") == (
        "rally.yml:1:9: character '\\x07' is not allowed in YAML; remove it or write it as an escape in a "
        "double-quoted string")


def test_duplicate_key() -> None:
    text = team(mate("a", "role: one\nrole: two"))
    assert one_line(text) == (
        "rally.yml:6:5: teammates[0].role: duplicate key 'role' (first written on line 5); keep one")


def test_several_documents() -> None:
    assert one_line(SAMPLE_MAP + "---\nteam: other\n") == (
        "rally.yml:15:1: a rally.yml holds one YAML document; remove this '---' and what follows, or merge them")


def test_alias_bomb_fails_fast_without_expanding() -> None:
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    text = "\n".join(levels) + "\nteam: *a9\n"
    started = time.monotonic()
    err = refusal(text)
    assert time.monotonic() - started < 2
    assert ("rally.yml:11:7: team: YAML aliases (*name) are not supported in a rally.yml; write the value out"
            in str(err).splitlines())


def test_a_single_alias_is_refused_where_it_is_written() -> None:
    text = team(mate("a", "role: &r Backend"), mate("b", "role: *r"))
    assert one_line(text) == (
        "rally.yml:8:11: teammates[1].role: YAML aliases (*name) are not supported in a rally.yml; "
        "write the value out")


def test_deep_nesting_fails_fast() -> None:
    assert one_line("team: " + "[" * 50_000 + "]" * 50_000 + "\n").endswith("nested too deeply for a rally.yml")


def test_unquoted_exclamation_pattern_gets_the_quoting_hint() -> None:
    text = team(mate("a", owns="\n      - src/**\n      - !src/shared/**"))
    assert one_line(text) == (
        "rally.yml:6:9: teammates[0].exclusive_write[1]: an unquoted '!' starts a YAML tag; quote the pattern: "
        "\"!src/shared/**\" (a '!pattern' takes paths back out of the list above it)")
    assert lines(team(mate("a", owns="[src/**, !src/shared/**]")))[0].endswith(
        "an unquoted '!' starts a YAML tag: quote the pattern (\"!src/shared/**\")")
    quoted = load(team(mate("a", owns='[src/**, "!src/shared/**"]')))
    assert quoted.config.teammates[0].exclusive_write == ("src/**", "!src/shared/**")


def test_other_tags_are_refused() -> None:
    assert one_line(team(mate("a", "role: !!binary aGVsbG8="))) == (
        "rally.yml:5:11: teammates[0].role: unsupported YAML tag 'tag:yaml.org,2002:binary'")
    assert one_line(team(mate("a", "role: !!python/object:os.system x"))).startswith(
        "rally.yml:5:11: teammates[0].role: unsupported YAML tag")


def test_keys_must_be_names() -> None:
    assert lines(SAMPLE_MAP + "1: one\n[a]: b\n") == [
        "rally.yml:15:1: a key must be a plain name, not '1'",
        "rally.yml:16:1: a key must be a plain name, not a list",
    ]


# --- Shape ------------------------------------------------------------------


def test_unknown_key_suggests_the_closest() -> None:
    assert one_line(team(mate("a", "exclusive_writes: [b]"))) == (
        "rally.yml:5:5: teammates[0].exclusive_writes: unknown key 'exclusive_writes'; did you mean "
        "'exclusive_write'? allowed here: name, role, task, exclusive_write, read, blocked_by, agent, timeout, "
        "retries, checkout, network, mode, verify, done_when, codeowners")
    assert one_line(SAMPLE_MAP + "teamates: []\n") == (
        "rally.yml:15:1: teamates: unknown key 'teamates'; did you mean 'teammates'? allowed here: version, team, "
        "base, branch_prefix, max_parallel, allow_large_team, defaults, budget, merge, approval, teammates")


def test_missing_keys() -> None:
    assert lines("team: demo\nteammates:\n  - name: a\n") == [
        "rally.yml:3:5: teammates[0].exclusive_write: missing required key 'exclusive_write': CODEOWNERS patterns "
        "this teammate alone may write; a later '!pattern' (quoted) takes paths back out",
    ]
    assert lines("version: 1\n") == [
        "rally.yml:1:1: team: missing required key 'team': the team's name, shown in prompts and reports",
        "rally.yml:1:1: teammates: missing required key 'teammates': the team: at least one teammate (a run takes up to 9 of them at once)",
    ]


def test_wrong_types() -> None:
    assert lines(team(mate("a", "read: src/**\nretries: \"2\"\nrole: 5"), top="max_parallel: [3]\n")) == [
        "rally.yml:2:1: max_parallel: expected a whole number, got a list",
        "rally.yml:6:5: teammates[0].read: expected a list, got the string 'src/**'; write [\"src/**\"]",
        "rally.yml:7:5: teammates[0].retries: expected a whole number, got the string '2'; remove the quotes",
        "rally.yml:8:5: teammates[0].role: expected a string, got the number 5; quote it: \"5\"",
    ]
    assert one_line("team: demo\nteammates: {name: a}\n") == "rally.yml:2:1: teammates: expected a list, got a mapping"


def test_wrong_choice_suggests_the_closest() -> None:
    assert one_line(team(mate("a", "agent: {preset: claud}"))) == (
        "rally.yml:5:13: teammates[0].agent.preset: must be one of claude, codex, aider, command; "
        "got the string 'claud'; did you mean 'claude'?")


@pytest.mark.parametrize("value", ["2", "true", "'1'"])
def test_version_must_be_1(value: str) -> None:
    assert one_line(SAMPLE_MAP.replace("version: 1", f"version: {value}")).startswith(
        "rally.yml:1:1: version: must be 1 (the only format so far), got ")


@pytest.mark.parametrize(("value", "message"), [
    ("20", "a bare number (20) is ambiguous; write a number with a unit: 45s, 20m, 1h30m, 2h"),
    ("20x", "'20x' is not a duration; write a number with a unit: 45s, 20m, 1h30m, 2h"),
    ("1h 30m", "'1h 30m' is not a duration; write a number with a unit: 45s, 20m, 1h30m, 2h"),
    ("0s", "'0s' is no time at all; write a number with a unit: 45s, 20m, 1h30m, 2h"),
    ("25h", "'25h' is more than 24h; a teammate that needs longer should be split in two"),
    ("true", "expected a duration, got true; write a number with a unit: 45s, 20m, 1h30m, 2h"),
    ("''", "'' is not a duration; write a number with a unit: 45s, 20m, 1h30m, 2h"),
])
def test_bad_durations(value: str, message: str) -> None:
    assert one_line(team(mate("a", f"timeout: {value}"))) == f"rally.yml:5:5: teammates[0].timeout: {message}"
    top = f"defaults:\n  timeout: {value}\n"
    assert one_line(team(mate("a"), top=top)) == f"rally.yml:3:3: defaults.timeout: {message}"


@pytest.mark.parametrize(("top", "message"), [
    ("max_parallel: 0\n", "max_parallel: must be at least 1, got the number 0"),
    ("max_parallel: 9\n", "max_parallel: 9 needs allow_large_team: true (at most 8 otherwise)"),
    ("max_parallel: 10\n", "max_parallel: 10 teammates at once is refused: at most 8 (9 with allow_large_team: true)"),
    ("max_parallel: 10\nallow_large_team: true\n",
     "max_parallel: 10 teammates at once is refused: at most 8 (9 with allow_large_team: true)"),
])
def test_max_parallel(top: str, message: str) -> None:
    assert one_line(team(mate("a"), top=top)) == f"rally.yml:2:1: {message}"


def test_max_parallel_9_with_allow_large_team() -> None:
    loaded = load(team(mate("a"), top="max_parallel: 9\nallow_large_team: true\n"))
    assert loaded.config.max_parallel == 9


# --- Names and dependencies -------------------------------------------------


@pytest.mark.parametrize(("name", "better"), [("API", "api"), ("-api", "api"), ("a_b", "a-b"), ("a" * 40, "a" * 39),
                                            ("'café'", "cafe")])
def test_bad_teammate_names(name: str, better: str) -> None:
    err = refusal(team(mate(name)))
    assert len(err.problems) == 1 and err.problems[0].code == "name"
    assert str(err).startswith("rally.yml:3:5: teammates[0].name: ")
    assert str(err).endswith(f"; write {better!r}")
    assert str(err).removesuffix(f"; write {better!r}").endswith("is not a valid teammate name: use lowercase letters, digits and '-', at most 39 "
                             "characters, starting with a letter or digit")


def test_duplicate_teammate_names() -> None:
    err = refusal(team(mate("api"), mate("web"), mate("api", owns="[lib/**]")))
    assert str(err) == ("rally.yml:7:5: teammates[2].name: duplicate teammate name 'api' (also teammates[0]); "
                        "names must be unique")
    assert err.problems[0].code == "name" and err.problems[0].teammates == ("api",)


def test_unknown_blocked_by() -> None:
    err = refusal(team(mate("api"), mate("web", "blocked_by: [api, ap1]")))
    assert str(err) == ("rally.yml:7:23: teammates[1].blocked_by[1]: unknown teammate 'ap1'; did you mean 'api'? "
                        "teammates are: api, web")
    assert err.problems[0].code == "name"


def test_self_dependency() -> None:
    err = refusal(team(mate("api", "blocked_by: [api]")))
    assert str(err) == "rally.yml:5:18: teammates[0].blocked_by[0]: 'api' is blocked by itself; remove this entry"
    assert err.problems[0].code == "cycle"


def test_dependency_cycle_is_named() -> None:
    err = refusal(team(mate("a", "blocked_by: [c]"), mate("b", "blocked_by: [a]"), mate("c", "blocked_by: [b]"),
                       mate("d", "blocked_by: [a]")))
    assert str(err) == ("rally.yml:5:18: teammates[0].blocked_by[0]: dependency cycle: a -> c -> b -> a "
                        "(each waits for the next); remove one of these blocked_by entries")
    assert err.problems[0].code == "cycle" and err.problems[0].teammates == ("a", "c", "b")


def test_two_cycles_are_both_named() -> None:
    err = refusal(team(mate("a", "blocked_by: [b]"), mate("b", "blocked_by: [a]"),
                       mate("c", "blocked_by: [d]"), mate("d", "blocked_by: [c]")))
    assert [p.message.split(": ", 1)[1].split(" (")[0] for p in err.problems] == [
        "dependency cycle: a -> b -> a", "dependency cycle: c -> d -> c"]


def test_a_long_chain_is_no_cycle() -> None:
    # Also checks that the cycle search does not recurse per teammate.
    chain = [mate("t0")] + [mate(f"t{i}", f"blocked_by: [t{i - 1}]") for i in range(1, 9)]
    assert load(team(*chain)).config.teammate("t8").blocked_by == ("t7",)


# --- Patterns and refs ------------------------------------------------------


@pytest.mark.parametrize(("pattern", "message"), [
    ("../x", "pattern escapes the repository: '../x'"),
    ("src/../../x", "pattern escapes the repository: 'src/../../x'"),
    ("'!../x'", "pattern escapes the repository: '!../x'"),
    ("//etc/passwd", "pattern is an absolute path (one leading '/' anchors a pattern at the root; two are refused): "
                     "'//etc/passwd'"),
    (".git/hooks/**", "pattern reaches into .git, which nobody may write: '.git/hooks/**'"),
    ("src/.GIT/config", "pattern reaches into .git, which nobody may write: 'src/.GIT/config'"),
    ('"src/\\x01"', "pattern contains a control character: 'src/\\x01'"),
    ("''", "empty pattern ''; write a path or a wildcard such as 'src/api/**'"),
    ("'!'", "empty pattern '!'; write a path or a wildcard such as 'src/api/**'"),
    ("' src/**'", "pattern has leading or trailing spaces: ' src/**'"),
])
def test_hostile_patterns(pattern: str, message: str) -> None:
    text = team(mate("a", owns=f"\n      - ok/**\n      - {pattern}"))
    err = refusal(text)
    assert str(err) == f"rally.yml:6:9: teammates[0].exclusive_write[1]: {message}"
    assert err.problems[0].code == "pattern"


@pytest.mark.parametrize(("pattern", "message"), [
    ("src//x", "pattern 'src//x': has an empty path segment ('//'); remove the doubled slash"),
    ("'src/x\\'", "pattern 'src/x\\\\': ends with a lone backslash; write '\\\\' for a literal backslash"),
    ("'src\\/x'", "pattern 'src\\\\/x': escapes a '/'; a slash always separates directories; remove the backslash"),
])
def test_patterns_the_language_refuses_point_at_their_line(pattern: str, message: str) -> None:
    # Refused where the map is read, not later by whatever compiles the patterns first
    # (validate's overlap proof said it with no line at all).
    text = team(mate("a", owns=f"\n      - ok/**\n      - {pattern}"))
    err = refusal(text)
    assert str(err) == f"rally.yml:6:9: teammates[0].exclusive_write[1]: {message}"
    assert err.problems[0].code == "pattern"


def test_hostile_patterns_in_read_and_done_when() -> None:
    assert lines(team(mate("a", "read: [docs/, ../secrets]\ndone_when: [/../x]"))) == [
        "rally.yml:5:19: teammates[0].read[1]: pattern escapes the repository: '../secrets'",
        "rally.yml:6:17: teammates[0].done_when[0]: pattern escapes the repository: '/../x'",
    ]


def test_anchored_patterns_are_fine() -> None:
    loaded = load(team(mate("a", owns="[/src/**, /Makefile, docs/]")))
    assert loaded.config.teammates[0].exclusive_write == ("/src/**", "/Makefile", "docs/")


def test_empty_exclusive_write() -> None:
    assert one_line(team(mate("a", owns="[]"))) == (
        "rally.yml:4:5: teammates[0].exclusive_write: must not be empty; list at least one pattern, e.g. [src/api/**]")


@pytest.mark.parametrize(("prefix", "why"), [
    ("'my rally'", "contains ' '"),
    ("a..b", "contains '..', '@{' or '//', or is '@'"),
    ("-rally", "starts with '-' (git would read it as an option)"),
    ("rally.lock", "has a component 'rally.lock' that starts with '.' or ends with '.lock'"),
    ("bots/.hidden", "has a component '.hidden' that starts with '.' or ends with '.lock'"),
    ("'a~b'", "contains '~'"),
    ("'a:b'", "contains ':'"),
    ("'a*b'", "contains '*'"),
    ("rally/", "starts or ends with '/', or ends with '.'"),
])
def test_branch_prefix_must_be_a_ref_component(prefix: str, why: str) -> None:
    value = prefix.strip("'")
    assert one_line(team(mate("a"), top=f"branch_prefix: {prefix}\n")) == (
        f"rally.yml:2:1: branch_prefix: {value!r} cannot be part of a git branch name: it {why}")
    assert one_line(team(mate("a"), top=f"base: {prefix}\n")) == (
        f"rally.yml:2:1: base: {value!r} cannot be part of a git branch name: it {why}")


def test_nested_branch_prefix_is_fine() -> None:
    assert load(team(mate("a"), top="branch_prefix: bots/rally\nbase: release/1.x\n")).config.base == "release/1.x"


# --- Agents -----------------------------------------------------------------


@pytest.mark.parametrize(("agent", "where", "message"), [
    ("{preset: command}", "5: teammates[0].agent.command",
     "preset command needs command: the program and its arguments, e.g. command: [./agent.sh]; "
     "or choose a preset: claude, codex, aider"),
    ("{}", "5: teammates[0].agent.command",
     "preset command needs command: the program and its arguments, e.g. command: [./agent.sh]; "
     "or choose a preset: claude, codex, aider"),
    ("{preset: claude, command: [x]}", "29: teammates[0].agent.command",
     "preset claude builds its own command; remove command (use args to add arguments), or set preset: command"),
    ("{preset: codex, shell: true}", "28: teammates[0].agent.shell",
     "shell applies to preset command only, not to preset codex"),
    ("{command: make agent}", "13: teammates[0].agent.command",
     "command is a list of arguments, e.g. [\"make agent\"] for a program without arguments; "
     "to run a shell line, set shell: true"),
    ("{command: [a, b], shell: true}", "13: teammates[0].agent.command",
     "with shell: true, command is one string run by /bin/sh; got 2 items"),
    ("{command: []}", "13: teammates[0].agent.command", "must not be empty"),
    ("{command: [./bot], model: [x]}", "31: teammates[0].agent.model", "expected a string, got a list"),
    ("{command: [./bot], env: [GITHUB TOKEN]}", "37: teammates[0].agent.env[0]",
     "'GITHUB TOKEN' is not an environment variable name: letters, digits and '_', not starting with a digit"),
])
def test_agent_rules(agent: str, where: str, message: str) -> None:
    assert one_line(team(mate("a", f"agent: {agent}"))) == f"rally.yml:5:{where}: {message}"


# --- Everything at once -----------------------------------------------------


def test_every_problem_is_listed_in_file_order() -> None:
    text = """\
        version: 2
        team: demo
        max_parallel: 12
        teammates:
          - name: API
            exclusive_write: [../x]
            blocked_by: [nobody]
          - name: b
            exclusive_write: [b]
            blocked_by: [c]
            timeout: soon
          - name: c
            exclusive_write: [c]
            blocked_by: [b]
            unknown: 1
        """
    err = refusal(text)
    assert [(p.location.line if p.location else 0, p.code) for p in err.problems] == [
        (1, "schema"), (3, "schema"), (5, "name"), (6, "pattern"), (7, "name"), (10, "cycle"), (11, "schema"),
        (15, "schema"),
    ]
    first = err.problems[3]
    assert first.location is not None and (first.location.file, first.location.line, first.location.column) == (
        "rally.yml", 6, 23)
    assert first.message == "teammates[0].exclusive_write[0]: pattern escapes the repository: '../x'"
    assert first.teammates == ("API",)


def test_filename_is_used_in_every_message() -> None:
    err = refusal(SAMPLE_MAP + "bogus: 1\n", filename="rally.yml@abc1234")
    assert str(err).startswith("rally.yml@abc1234:15:1: bogus: unknown key")


# --- JSON Schema --------------------------------------------------------------


def _yaml_data(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)


def test_json_schema_accepts_good_maps_and_refuses_bad_ones() -> None:
    schema = json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    assert not list(validator.iter_errors(_yaml_data(SAMPLE_MAP)))
    shell = team(mate("a", "agent: {command: make x, shell: true}\ntimeout: 1h30m"))
    assert not list(validator.iter_errors(_yaml_data(shell)))
    for bad in (SAMPLE_MAP + "bogus: 1\n", team(mate("a", "timeout: 20")), team(mate("a", "agent: {preset: x}")),
                team(mate("a_b"))):
        assert list(validator.iter_errors(_yaml_data(bad))), bad


def test_json_schema_describes_every_field() -> None:
    schema = json_schema()
    objects = [schema, *schema["definitions"].values()]
    for obj in objects:
        for name, prop in obj["properties"].items():
            assert prop.get("description"), name
    assert schema["definitions"]["Defaults"]["properties"]["timeout"]["type"] == "string"
    assert schema["definitions"]["Teammate"]["properties"]["name"]["pattern"] == "^[a-z0-9][a-z0-9-]{0,38}$"


def test_schema_command_prints_the_schema() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json_schema()


def test_schema_command_output_is_a_draft7_schema() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    schema = json.loads(result.output)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)


# --- Fuzz: only ConfigError escapes --------------------------------------------


def _load_or_refuse(data: str | bytes) -> None:
    try:
        loaded = load_config_text(data)
    except ConfigError as err:
        assert "Traceback" not in str(err)
        return
    assert isinstance(loaded.config, Config)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

YAML_ALPHABET = st.sampled_from(list("abz019 -:_[]{},&*!|>'\"#%@`\t\n\\/.?~=") + ["\n  ", "\n- ", "---", "..."])
YAML_WORDS = st.sampled_from([
    "version", "team", "teammates", "name", "exclusive_write", "blocked_by", "agent", "preset", "command",
    "timeout", "max_parallel", "defaults", "shell", "true", "null", "20m", "9", "!x", "*a", "&a", "<<", "- ",
    ": ", "\n", "\n  ", "\n    ", "[", "]", "{", "}", ", ", "'", '"', "\t", "\x00", "\ufeff", "é",
])


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    _load_or_refuse(data)


@FUZZ
@given(st.lists(st.one_of(YAML_ALPHABET, YAML_WORDS), max_size=80).map("".join))
def test_fuzz_yaml_like_text(text: str) -> None:
    _load_or_refuse(text)


@FUZZ
@given(st.lists(st.one_of(YAML_WORDS, YAML_ALPHABET), max_size=40).map("".join))
def test_fuzz_mutated_sample(noise: str) -> None:
    for cut in (30, 120, len(SAMPLE_MAP) - 20):
        _load_or_refuse(SAMPLE_MAP[:cut] + noise + SAMPLE_MAP[cut:])


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**30), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["20m", "../x", "!a", "api", "claude", "1h30m"]))
keys = st.one_of(st.sampled_from(["version", "team", "teammates", "name", "exclusive_write", "blocked_by",
                                  "agent", "preset", "command", "shell", "timeout", "defaults", "merge"]),
                 st.text(max_size=8))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


@FUZZ
@given(st.dictionaries(keys, documents, max_size=6))
def test_fuzz_structured_documents(document: dict[str, object]) -> None:
    import io

    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(document, out)
    _load_or_refuse(out.getvalue())


# --- The reference stays true ---------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "rally-yml.md"


def _yaml_blocks() -> list[str]:
    text = DOCS.read_text()
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


def test_docs_complete_example_loads() -> None:
    example = _yaml_blocks()[0]
    config = load_config_text(example).config
    assert [t.name for t in config.teammates] == ["schema", "api"]
    assert config.teammate("api").exclusive_write[-1] == "!src/api/generated/**"


def test_docs_agent_examples_load() -> None:
    agents = [line.split("#")[0].strip() for line in _yaml_blocks()[1].splitlines() if line.strip()]
    assert len(agents) == 5
    for line in agents:
        load(team(mate("a", line)))


def test_many_problems_are_cut_short_in_the_message_but_kept_in_the_list() -> None:
    text = team(*(mate(f"t{i}", owns="[../x]") for i in range(300)))
    with pytest.raises(ConfigInvalid) as info:
        load_config_text(text)
    assert len(info.value.problems) == 300  # every pattern
    message = str(info.value).splitlines()
    assert len(message) == 201
    assert message[-1] == "... and 100 more problems (rally-gh validate --format json lists them all)"


# --- Words: one message a mistake, with the fix ------------------------------------


def test_a_misspelt_required_key_is_one_message_at_the_key_as_written() -> None:
    [line] = lines("team: demo\nteammates:\n  - name: a\n    exclusive_writes: [b]\n")
    assert line.startswith(
        "rally.yml:4:5: teammates[0].exclusive_writes: unknown key 'exclusive_writes'; did you mean "
        "'exclusive_write' (required, and missing)? allowed here: name, role, task, exclusive_write, read, ")
    # Two teammates, each its own misspelling; a missing key with no misspelling still says so.
    found = lines("team: demo\nteammates:\n  - {name: a, exclusive_writes: [b]}\n  - {name: b, exclusiv_write: [c]}\n"
                  "  - {name: c}\n")
    assert [line.split(": ", 2)[1] for line in found] == [
        "teammates[0].exclusive_writes", "teammates[1].exclusiv_write", "teammates[2].exclusive_write"]
    assert "missing required key 'exclusive_write'" in found[2]


def test_an_invalid_name_comes_with_a_valid_one() -> None:
    assert one_line(team(mate("Front End"))).endswith("starting with a letter or digit; write 'front-end'")
    assert one_line(team(mate("'API_v2'"))).endswith("; write 'api-v2'")
    assert one_line(team(mate("'---'"))).endswith("starting with a letter or digit")


@pytest.mark.parametrize(("text", "expected"), [
    # A key indented deeper than its neighbours (ruamel: expected <block end>, but found '<block mapping start>').
    ("team: t\nteammates:\n  - name: a\n    exclusive_write: [b]\n     role: x\n",
     "rally.yml:5:6: wrong indentation: 'role: x' starts in column 6, right of the key on line 4 (column 5); "
     "the keys of one mapping start in the same column"),
    ("team: t\nteammates:\n  - name: a\n   exclusive_write: [b]\n",
     "rally.yml:4:4: wrong indentation: 'exclusive_write: [b]' starts in column 4, left of the key on line 3 "
     "(column 5)"),
    # A key where the list has its items (ruamel: found '?', though there is no '?').
    ("team: t\nteammates:\n  - name: a\n  exclusive_write: [b]\n",
     "rally.yml:4:3: wrong indentation: 'exclusive_write: [b]' starts in column 3, where the list above has its "
     "items ('- ...'); to belong to the item above, start it in column 5 like the key on line 3, or start a new "
     "item with '- '"),
    # A key indented under a scalar (ruamel: mapping values are not allowed here).
    ("version: 1\n team: t\n",
     "rally.yml:2:2: wrong indentation: 'team: t' starts in column 2, right of the key on line 1 (column 1), so "
     "YAML reads it as part of that key's value; start it in column 1"),
    ("team: t\nteammates:\n  - name: a\n    task: Fix: the bug\n    exclusive_write: [b]\n",
     "rally.yml:4:5: 'task: Fix: the bug': a ': ' inside an unquoted value starts another mapping; quote the value"),
])
def test_wrong_indentation_is_said_in_the_files_terms(text: str, expected: str) -> None:
    message = one_line(text)
    assert message.startswith(expected), message
    assert "<block" not in message and "'?'" not in message


def test_validate_labels_errors_as_it_labels_warnings_and_counts_in_words(tmp_path: Path) -> None:
    from rally_gh.commands import validate as validate_cmd

    (tmp_path / "rally.yml").write_text("team: t\nteammates:\n  - {name: a, exclusive_write: [x/]}\n"
                                        "  - {name: b, exclusive_write: [x/]}\n")
    out = io.StringIO()
    assert validate_cmd.run(tmp_path, out) == 1
    text = out.getvalue()
    assert "rally.yml:4:33: error: teammates[1].exclusive_write[0]: a: x/ and b: x/ both own x/a" in text
    (tmp_path / "rally.yml").write_text("team: t\nteammates:\n  - {name: a, exclusive_write: [x/]}\n")
    out = io.StringIO()
    validate_cmd.run(tmp_path, out)
    assert out.getvalue().endswith("rally.yml: 1 teammate, 1 pattern: valid (0 errors, 0 warnings)\n")
