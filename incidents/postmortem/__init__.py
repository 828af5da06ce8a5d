"""Post-mortems, built from the record.

- ``facts``: the report's read-model, computed from an incident's record
  (milestones, targets met or missed, escalations, messages, roles, tasks).
- ``chart``: the timeline chart laid out on one time axis.
- ``render``: HTML, Markdown and PDF.
- ``trends``: figures across incidents.
- ``services``: writes (start, edit, submit, publish; action items).
- ``reminders``: e-mails to owners of overdue action items.

The names below are the package's public surface; callers import them from here.
"""

from incidents.postmortem.facts import Report, acknowledge_target, report_build
from incidents.postmortem.reminders import action_item_reminders_send, action_items_overdue
from incidents.postmortem.render import (
    PdfUnavailable,
    postmortem_path,
    report_context,
    report_html,
    report_markdown,
    report_markdown_chunks,
    report_pdf,
    timeline_csv_write,
)
from incidents.postmortem.services import (
    ACTION_ITEM_FIELDS,
    action_item_create,
    action_item_revise_playbook,
    action_item_set_status,
    action_item_update,
    postmortem_edit,
    postmortem_publish,
    postmortem_start,
    postmortem_submit,
)
from incidents.postmortem.trends import trends

__all__ = [
    "ACTION_ITEM_FIELDS",
    "PdfUnavailable",
    "Report",
    "acknowledge_target",
    "action_item_create",
    "action_item_reminders_send",
    "action_item_revise_playbook",
    "action_item_set_status",
    "action_item_update",
    "action_items_overdue",
    "postmortem_edit",
    "postmortem_path",
    "postmortem_publish",
    "postmortem_start",
    "postmortem_submit",
    "report_build",
    "report_context",
    "report_html",
    "report_markdown",
    "report_markdown_chunks",
    "report_pdf",
    "timeline_csv_write",
    "trends",
]
