"""``linesight chat INSPECTION_ID [QUESTION]``: questions about a stored inspection (pipeline/services/dialogue.py).

With a QUESTION: print the answer and exit. Without one: print the stored turns, then read
questions at ``you> `` until Ctrl-D or ``exit``. Every turn is stored, so a later session (or the
HTTP API) continues the same conversation.
"""

from __future__ import annotations

import argparse
import sys

from linesight.commands._common import positive_int

_ROLE_PROMPTS = {"operator": "you> ", "assistant": "assistant> "}
_EXIT_WORDS = {"exit", "quit"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="ask questions about a stored inspection (multi-turn; turns are stored)",
        description=(
            "Asks the LLM about one stored inspection: it sees the frame (E_img), the anomaly map (E_prompt), "
            "the facts the system knows (regions, boxes, areas, score vs threshold, bank, the line's recent "
            "history, the class's last false alarm) and the conversation so far. An LLM answer that repeats "
            "itself, echoes the prompt or contradicts the facts is replaced by the facts answer (shown as "
            "'assistant (facts)>' in a session). With QUESTION, prints the answer and exits; without, starts "
            "an interactive session (Ctrl-D or 'exit' to leave)."
        ),
    )
    parser.add_argument("inspection_id", type=positive_int, metavar="INSPECTION_ID", help="id from `linesight history`")
    parser.add_argument("question", nargs="?", default=None, metavar="QUESTION", help="one question; omit for a session")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.data_folder import open_repository
    from linesight.settings import load_settings
    from pipeline.services.dialogue import DialogueService

    settings = load_settings()
    service = DialogueService(settings, open_repository(settings))  # an existing database: never migrated here
    if args.question is not None:
        print(service.ask(args.inspection_id, args.question).answer)
        return 0
    return _interactive(service, args.inspection_id)


def _interactive(service, inspection_id: int) -> int:
    from pipeline.exceptions import InvalidQuestionError

    turns = service.history(inspection_id)  # fails here, before loading the model, for an unknown id
    row = service.repository.get_inspection(inspection_id)
    print(f"inspection {row.id}: {row.product_class} on {row.line_id}, {row.verdict}")
    for turn in turns:
        print(f"{_prompt(turn.role, turn.source)}{turn.text}")
    print("(Ctrl-D or 'exit' to leave)")
    while True:
        try:
            question = input("you> ")
        except EOFError:
            print()
            return 0
        if question.strip().lower() in _EXIT_WORDS:
            return 0
        if not question.strip():
            continue
        try:
            reply = service.ask(inspection_id, question)
        except InvalidQuestionError as exc:
            print(f"linesight: error: {exc}", file=sys.stderr)
            continue
        print(f"{_prompt('assistant', reply.source)}{reply.answer}", flush=True)


def _prompt(role: str, source: str | None) -> str:
    """``you> ``, ``assistant> `` (the LLM's text) or ``assistant (facts)> `` (the facts answer)."""
    if role == "assistant" and source == "facts":
        return "assistant (facts)> "
    return _ROLE_PROMPTS.get(role, role + "> ")
