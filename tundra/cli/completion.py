"""`tundra completion bash|zsh`: shell completion generated from the parser itself."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(func=cmd_completion)


def _tree(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """"cmd sub" -> words that may follow it."""
    out: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        words: list[str] = []
        for action in p._actions:
            words.extend(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    words.append(name)
                    walk(child, f"{prefix} {name}".strip())
            elif action.choices and not action.option_strings:
                words.extend(str(c) for c in action.choices)
        out[prefix] = sorted(set(words))

    walk(parser, "")
    return out


def cmd_completion(args: argparse.Namespace) -> int:
    from tundra.cli.main import build_parser

    tree = _tree(build_parser())
    cases = "\n".join(f'        "{k}") words="{" ".join(v)}" ;;' for k, v in tree.items())
    script = f"""# tundra {args.shell} completion: eval "$(tundra completion {args.shell})"
_tundra_complete() {{
    local cur key words i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    key=""
    for ((i=1; i<COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) key="${{key:+$key }}${{COMP_WORDS[i]}}" ;; esac
    done
    case "$key" in
{cases}
        *) words="" ;;
    esac
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}}
"""
    if args.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    script += "complete -F _tundra_complete tundra\n"
    print(script, end="")
    return 0
