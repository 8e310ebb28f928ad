"""``linesight feedback ID false-alarm|defect [--note TEXT]`` and ``linesight ack ID``: operator review.

A false alarm's frame is what the bank rebuild from feedback learns from (``Repository.labelled_frames``);
``defect`` confirms a flagged frame or marks one the detector missed. The newest label is the one in
force; repeating it changes nothing. ``ack`` records that an operator saw the alert (the first one stands).
"""

from __future__ import annotations

import argparse
import getpass
import json

from linesight.commands._common import positive_int

_LABELS = {"false-alarm": "false_alarm", "defect": "defect"}


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "operator"


def register(subparsers: argparse._SubParsersAction) -> None:
    feedback = subparsers.add_parser(
        "feedback",
        help="mark a stored inspection a false alarm or a confirmed defect",
        description="Label inspection ID (from `linesight history`). The newest label is the one in force; "
                    "false alarms become normal references of the next bank version of their class.",
    )
    feedback.add_argument("inspection_id", type=positive_int, metavar="ID", help="inspection id")
    feedback.add_argument("label", choices=sorted(_LABELS), help="false-alarm (flagged frames only) or defect")
    feedback.add_argument("--note", default=None, help="free text kept with the label (<= 2000 characters)")
    feedback.add_argument("--actor", default=None, help="who labels it (default: the OS user name)")
    feedback.add_argument("--json", action="store_true", help="print the stored label as JSON")
    feedback.set_defaults(handler=handle_feedback)

    ack = subparsers.add_parser(
        "ack", help="acknowledge a flagged inspection's alert",
        description="Record that an operator saw inspection ID's alert; the first acknowledgement stands.",
    )
    ack.add_argument("inspection_id", type=positive_int, metavar="ID", help="inspection id")
    ack.add_argument("--actor", default=None, help="who acknowledges (default: the OS user name)")
    ack.add_argument("--json", action="store_true", help="print the acknowledgement as JSON")
    ack.set_defaults(handler=handle_ack)


def _inspection(inspection_id: int):
    from linesight.settings import load_settings
    from storage.db import Database
    from storage.exceptions import NotFoundError
    from storage.repository import Repository

    database = Database(load_settings().database_url)
    database.migrate()
    repository = Repository(database)
    row = repository.get_inspection(inspection_id)
    if row is None:
        raise NotFoundError(f"no inspection with id {inspection_id} (see `linesight history`)")
    return repository, row


def handle_feedback(args: argparse.Namespace) -> int:
    repository, row = _inspection(args.inspection_id)
    stored = repository.set_feedback(row.frame_id, _LABELS[args.label], note=args.note, actor=args.actor or _operator())
    if args.json:
        print(json.dumps({"id": row.id, "frame_id": row.frame_id, "label": stored.label, "note": stored.note,
                          "actor": stored.actor, "created_at": stored.created_at.isoformat()}))
    else:
        note = f" ({stored.note})" if stored.note else ""
        print(f"inspection {row.id} ({row.product_class} on {row.line_id}) labelled {stored.label}{note} "
              f"by {stored.actor} at {stored.created_at.isoformat(timespec='seconds')}")
    return 0


def handle_ack(args: argparse.Namespace) -> int:
    repository, row = _inspection(args.inspection_id)
    stored = repository.acknowledge(row.frame_id, actor=args.actor or _operator())
    if args.json:
        print(json.dumps({"id": row.id, "frame_id": row.frame_id, "acknowledged_by": stored.acknowledged_by,
                          "acknowledged_at": stored.acknowledged_at.isoformat()}))
    else:
        print(f"inspection {row.id} acknowledged by {stored.acknowledged_by} "
              f"at {stored.acknowledged_at.isoformat(timespec='seconds')}")
    return 0
