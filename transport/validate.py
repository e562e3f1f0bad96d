"""Edge validation of what clients send: REST bodies and client WebSocket commands.

Both carry the same fields, so both are checked by the same rules, against
``transport.limits.Limits``: string lengths, the number of answers, and the
enumerated fields (``permissionMode``, ``runner``). A violation raises
``InputRefused`` whose message names the field (as it is spelled on the
wire) and the limit; REST answers it with 400, the client socket with a
``protocol_error``. Nothing is handed to a session before it passes.
"""

from __future__ import annotations

from collections.abc import Mapping

from transport import protocol as p
from transport.limits import InputRefused, Limits, check_choice, check_text


def check_answers(answers: Mapping[str, str], limits: Limits) -> None:
    if len(answers) > limits.answers:
        raise InputRefused(f"answers holds {len(answers)} entries; the limit is {limits.answers}")
    for question, answer in answers.items():
        check_text("answers (a question)", question, limits.answer_chars)
        check_text("answers (an answer)", answer, limits.answer_chars)


def check_session_id(session_id: str, limits: Limits) -> None:
    check_text("sessionId", session_id, limits.id_chars)


def check_create(
    limits: Limits,
    *,
    name: str,
    repo_url: str | None,
    branch: str | None,
    permission_mode: str,
    model: str | None,
    runner: str | None,
) -> None:
    check_text("name", name, limits.name_chars)
    check_text("repoUrl", repo_url, limits.repo_url_chars)
    check_text("branch", branch, limits.branch_chars)
    check_text("model", model, limits.model_chars)
    check_choice("permissionMode", permission_mode, p.PERMISSION_MODES)
    check_choice("runner", runner, p.RUNNERS)


def check_settings(limits: Limits, name: str | None, permission_mode: str | None) -> None:
    check_text("name", name, limits.name_chars)
    check_choice("permissionMode", permission_mode, p.PERMISSION_MODES)


def check_client_frame(frame: p.ClientToServer, limits: Limits) -> None:
    """Raise InputRefused if ``frame`` breaks a limit."""
    check_text("requestId", frame.request_id, limits.id_chars)
    if isinstance(frame, p.CreateSessionFrame):
        check_create(
            limits,
            name=frame.name,
            repo_url=frame.repo_url,
            branch=frame.branch,
            permission_mode=frame.permission_mode,
            model=frame.model,
            runner=frame.runner,
        )
        return
    check_session_id(frame.session_id, limits)
    match frame:
        case p.SendPrompt(content=content):
            check_text("content", content, limits.prompt_chars)
        case p.ApproveTool(approval_id=approval_id, message=message):
            check_text("approvalId", approval_id, limits.id_chars)
            check_text("message", message, limits.answer_chars)
        case p.AnswerQuestionFrame(question_id=question_id, answers=answers):
            check_text("questionId", question_id, limits.id_chars)
            check_answers(answers, limits)
        case p.UpdateSessionSettings(name=name, permission_mode=mode):
            check_settings(limits, name, mode)
        case p.SetSessionModel(model=model):
            check_text("model", model, limits.model_chars)
        case _:
            pass
