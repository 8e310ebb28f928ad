"""The dialogue endpoints: stored turns, new turns from the dialogue service; 503 naming the model when it cannot load."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.unit.api.helpers import TOKEN, seed


@dataclass
class _Reply:
    answer: str
    turns: list


class _GroundedDialogue:
    """The DialogueService contract (ask -> answer + the whole conversation), answering from the stored row."""

    def __init__(self, repository):
        self.repository = repository

    def ask(self, inspection_id: int, question: str) -> _Reply:
        row = self.repository.get_inspection(inspection_id)
        self.repository.add_chat_turn(inspection_id, "operator", question)
        answer = f"{row.verdict} (score {row.score:.2f})"
        self.repository.add_chat_turn(inspection_id, "assistant", answer)
        return _Reply(answer, self.repository.chat_turns(inspection_id))


@pytest.fixture
def app(settings, repository):
    from linesight.api.app import create_app

    return create_app(settings, token=TOKEN, repository=repository, dialogue=_GroundedDialogue(repository),
                      stream_snapshot=lambda: None)


def test_each_question_returns_only_the_turns_it_added(client, repository, auth):
    row = seed(repository, 4)[3]
    first = client.post(f"/api/inspections/{row.id}/chat", json={"question": "Is it defective?"}, headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["answer"].startswith("Yes: an anomaly at the top right.")
    assert [(t["turn_index"], t["role"]) for t in first.json()["turns"]] == [(0, "operator"), (1, "assistant")]
    second = client.post(f"/api/inspections/{row.id}/chat", json={"question": "  Where?  "}, headers=auth).json()
    assert [(t["turn_index"], t["role"], t["text"][:6]) for t in second["turns"]] == [
        (2, "operator", "Where?"), (3, "assistant", "Yes: a")]
    history = client.get(f"/api/inspections/{row.id}/chat").json()["turns"]
    assert [t["turn_index"] for t in history] == [0, 1, 2, 3]


def test_asking_about_an_unknown_inspection_is_404(client, auth):
    response = client.post("/api/inspections/77/chat", json={"question": "?"}, headers=auth)
    assert response.status_code == 404
    assert response.json() == {"error": "no inspection with id 77"}


def test_a_dialogue_model_that_cannot_load_is_503_naming_it(settings, repository, auth, tmp_path):
    from fastapi.testclient import TestClient

    from linesight.api.app import create_app

    row = seed(repository, 1)[0]
    broken = settings.model_copy(update={"llm_path": tmp_path / "no-llm-here"})
    with TestClient(create_app(broken, token=TOKEN, repository=repository, stream_snapshot=lambda: None)) as client:
        response = client.post(f"/api/inspections/{row.id}/chat", json={"question": "why?"}, headers=auth)
        assert response.status_code == 503
        assert "no-llm-here" in response.json()["error"]
        empty = client.post(f"/api/inspections/{row.id}/chat", json={"question": "   "}, headers=auth)
        assert empty.status_code == 422
        assert client.get(f"/api/inspections/{row.id}/chat").json() == {"turns": []}
