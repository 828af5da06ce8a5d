"""Playbooks as YAML: export, and an import that refuses a bad file whole.

The format (``format: crisisdesk-playbooks/1``) holds the roles and stakeholder
groups the playbooks refer to, then the playbooks with their steps, templates,
escalation levels and cadences; ``playbooks/starter/starter.yaml`` is an
example. Import semantics:

1. Parse into a node tree that keeps line numbers, validate everything
   (types, choices, references, placeholders) and collect *every* error as
   ``line N: path: message``. Any error: nothing is written.
2. Roles and groups named in the file are created if their slug is new; an
   existing one is never overwritten.
3. A playbook whose content equals an existing version of its key is left as
   it is ("unchanged"), so loading the same file twice adds nothing. Other
   content becomes a new version: the file's number if it is free, otherwise
   the next one. ``status: published`` publishes it through the service
   (the previous published version is retired, not changed).

Export then import into an empty database then export gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction
from django.utils.translation import gettext as _

from playbooks.models import (
    DEFAULT_REPLY_MINUTES,
    DEFAULT_REPLY_WARN_MINUTES,
    DEFAULT_ROLL_CALL_MINUTES,
    Channel,
    CrisisRole,
    EscalationLevel,
    MessageTemplate,
    OnCallRotation,
    Phase,
    Playbook,
    PlaybookStep,
    Scenario,
    StakeholderGroup,
    UpdateCadence,
)
from playbooks.services import escalation_positions_validate, playbook_publish, playbook_retire

FORMAT = "crisisdesk-playbooks/1"
User = get_user_model()


class PlaybookImportError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ImportResult:
    created: list[Playbook] = field(default_factory=list)
    unchanged: list[Playbook] = field(default_factory=list)
    roles_created: int = 0
    groups_created: int = 0


# -------------------------------------------------------------------- export


def _role_dict(role: CrisisRole) -> dict:
    return {
        "slug": role.slug,
        "name": role.name,
        "responsibilities": role.responsibilities,
        "can_approve_messages": role.can_approve_messages,
        "sort_order": role.sort_order,
    }


def _group_dict(group: StakeholderGroup) -> dict:
    return {
        "slug": group.slug,
        "name": group.name,
        "kind": str(group.kind),
        "priority": group.priority,
        "preferred_channels": list(group.preferred_channels),
        "default_language": group.default_language,
        "description": group.description,
        "public": group.public,
    }


def _level_dict(level: EscalationLevel) -> dict:
    entry: dict = {"delay_seconds": level.delay_seconds, "target": str(level.target)}
    if level.target == EscalationLevel.Target.ROLE_ON_CALL:
        entry["role"] = level.role.slug
    elif level.target == EscalationLevel.Target.ROTATION:
        entry["rotation"] = level.rotation.name
    else:
        entry["users"] = sorted(u.get_username() for u in level.users.all())
    return entry


def playbook_to_dict(playbook: Playbook) -> dict:
    return {
        "key": playbook.key,
        "version": playbook.version,
        "title": playbook.title,
        "scenario": str(playbook.scenario),
        "status": str(playbook.status),
        "summary": playbook.summary,
        "severity_guidance": playbook.severity_guidance,
        "owner": playbook.owner.get_username() if playbook.owner else None,
        "review_cycle_days": playbook.review_cycle_days,
        "last_reviewed_on": playbook.last_reviewed_on.isoformat()
        if playbook.last_reviewed_on
        else None,
        "first_statement_minutes": playbook.first_statement_minutes,
        "escalation_repeat_count": playbook.escalation_repeat_count,
        "page_at_once_max_severity": playbook.page_at_once_max_severity,
        "roll_call_minutes": playbook.roll_call_minutes,
        "reply_minutes": playbook.reply_minutes,
        "reply_warn_minutes": playbook.reply_warn_minutes,
        "reply_deadlines": [dict(entry) for entry in playbook.reply_deadlines],
        "steps": [
            {
                "phase": str(s.phase),
                "title": s.title,
                "role": s.role.slug if s.role else None,
                "due_offset_minutes": s.due_offset_minutes,
                "instructions": s.instructions,
            }
            for s in playbook.steps.select_related("role").order_by("position")
        ],
        "templates": [
            {
                "name": t.name,
                "audience": t.audience.slug,
                "channel": str(t.channel),
                "language": t.language,
                "subject": t.subject,
                "body": t.body,
            }
            for t in playbook.templates.select_related("audience").order_by("pk")
        ],
        "escalation": [
            _level_dict(level)
            for level in playbook.escalation_levels.select_related("role", "rotation")
            .prefetch_related("users")
            .order_by("position")
        ],
        "cadences": [
            {"audience": c.audience.slug, "every_minutes": c.every_minutes}
            for c in playbook.cadences.select_related("audience").order_by("pk")
        ],
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def playbooks_export_yaml(*, playbooks: Iterable[Playbook]) -> str:
    playbooks = list(playbooks)
    data = [playbook_to_dict(p) for p in playbooks]
    role_slugs = {s["role"] for d in data for s in d["steps"] if s["role"]}
    role_slugs |= {lv["role"] for d in data for lv in d["escalation"] if "role" in lv}
    group_slugs = {t["audience"] for d in data for t in d["templates"]}
    group_slugs |= {c["audience"] for d in data for c in d["cadences"]}
    document = {
        "format": FORMAT,
        "roles": [_role_dict(r) for r in CrisisRole.objects.filter(slug__in=role_slugs)],
        "stakeholder_groups": [
            _group_dict(g) for g in StakeholderGroup.objects.filter(slug__in=group_slugs)
        ],
        "playbooks": data,
    }
    return yaml.dump(
        document,
        Dumper=_Dumper,
        allow_unicode=True,
        sort_keys=False,
        width=100,
        default_flow_style=False,
    )


# -------------------------------------------------------------------- import

# Limits on an uploaded document, checked before any Python object is built:
# a file of a few hundred bytes must not cost seconds of CPU or a deep recursion.
MAX_DOCUMENT_BYTES = 1_000_000
MAX_NESTING_DEPTH = 20


class _Loc(dict):
    """A mapping from the file, remembering the line of itself and of each key."""

    line: int
    lines: dict


class _LocList(list):
    line: int
    lines: list


class _GuardedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses anchors and aliases, and nesting deeper than
    MAX_NESTING_DEPTH, while composing the node tree (events in, nodes out).

    Aliases are what make a 439-byte "billion laughs" document cost tens of seconds;
    the depth is counted before the composer recurses, so deep input cannot
    exhaust the stack either.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None,
                None,
                _("anchors and aliases (&name, *name) are not accepted: write the value out"),
                event.start_mark,
            )
        nested = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if nested and self._depth >= MAX_NESTING_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                _("lists and mappings are nested deeper than %(n)s levels")
                % {"n": MAX_NESTING_DEPTH},
                event.start_mark,
            )
        self._depth += nested
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nested


def _scalar(constructor: yaml.SafeLoader, node, errors: list[str]):
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(
            _("line %(line)s: cannot read “%(value)s”: %(problem)s")
            % {"line": node.start_mark.line + 1, "value": node.value, "problem": problem}
        )
        return None


def _located(node, constructor: yaml.SafeLoader, errors: list[str]):
    """The node tree as dicts and lists that know their lines; every problem collected."""
    if isinstance(node, yaml.MappingNode):
        out = _Loc()
        out.line, out.lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append(
                    _("line %(line)s: a key must be text, not a list or a mapping") % {"line": line}
                )
                continue
            key = _scalar(constructor, key_node, errors)
            if key in out:
                errors.append(
                    _("line %(line)s: key “%(key)s” appears twice") % {"line": line, "key": key}
                )
                continue
            out[key] = _located(value_node, constructor, errors)
            out.lines[key] = value_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        items = _LocList(_located(n, constructor, errors) for n in node.value)
        items.line = node.start_mark.line + 1
        items.lines = [n.start_mark.line + 1 for n in node.value]
        return items
    return _scalar(constructor, node, errors)


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, line: int, path: str, message: str) -> None:
        self.errors.append(
            # Translators: where in the YAML document (a line, then a path like
            # playbooks[0].steps[2].role), then the problem.
            _("line %(line)s: %(path)s: %(problem)s")
            % {"line": line, "path": path, "problem": message}
        )

    def mapping(self, value, line: int, path: str, required: tuple, optional: tuple) -> bool:
        """Report missing and unknown keys; False only if it is no mapping at all, so the
        rest of the entry is still checked and every error of the document reported."""
        if not isinstance(value, dict):
            self.err(line, path, _("expected a mapping (key: value lines)"))
            return False
        for key in required:
            if key not in value:
                self.err(
                    getattr(value, "line", line), path, _("“%(key)s” is missing") % {"key": key}
                )
        for key in value:
            if key not in required and key not in optional:
                self.err(value.lines.get(key, line), f"{path}.{key}", _("unknown field"))
        return True

    def get(self, m, key: str, path: str, kind, *, default=None, choices=None, nullable=False):
        """A value of the right type (or the default, with an error); ranges, lengths and
        text rules are the model's, checked by ``model``."""
        if key not in m:
            return default
        value, line = m[key], m.lines.get(key, m.line)
        where = f"{path}.{key}"
        if value is None:
            if not nullable:
                self.err(line, where, _("must not be empty"))
            return None
        if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.err(line, where, _("expected a whole number, got %(value)r") % {"value": value})
            return default
        if kind is bool and not isinstance(value, bool):
            self.err(line, where, _("expected true or false, got %(value)r") % {"value": value})
            return default
        if kind is str and not isinstance(value, str):
            self.err(line, where, _("expected text, got %(type)s") % {"type": type(value).__name__})
            return default
        if kind is list and not isinstance(value, list):
            self.err(line, where, _("expected a list"))
            return default
        if choices is not None and value not in choices:
            self.err(
                line,
                where,
                _("“%(value)s” is not one of: %(choices)s")
                % {"value": value, "choices": ", ".join(map(str, choices))},
            )
            return default
        return value

    def model(self, instance: models.Model, m, path: str, *, run_clean: bool = True) -> None:
        """The model's own validation (validators, lengths, slugs, text), at the key's line.

        Fields still empty here were reported missing or mistyped already, and foreign
        keys are resolved by name in this module, so both are left out.
        """
        skip = {
            f.name
            for f in instance._meta.concrete_fields
            if f.is_relation or (getattr(instance, f.attname) is None and not f.null)
        }
        errors: dict[str, list[str]] = {}
        try:
            instance.clean_fields(exclude=skip)
        except ValidationError as exc:
            errors = exc.message_dict
        if run_clean:
            try:
                instance.clean()
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    errors.setdefault(field, []).extend(messages)
        for field, messages in errors.items():
            where = path if field == NON_FIELD_ERRORS else f"{path}.{field}"
            for message in messages:
                self.err(m.lines.get(field, m.line), where, message)


_PLAYBOOK_FIELDS = (
    "key",
    "version",
    "title",
    "scenario",
    "status",
    "summary",
    "severity_guidance",
    "owner",
    "review_cycle_days",
    "last_reviewed_on",
    "first_statement_minutes",
    "escalation_repeat_count",
    "page_at_once_max_severity",
    "roll_call_minutes",
    "reply_minutes",
    "reply_warn_minutes",
    "reply_deadlines",
    "steps",
    "templates",
    "escalation",
    "cadences",
)


def _parse(text: str) -> dict:
    size = len(text.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise PlaybookImportError(
            [
                _("file: the document is larger than %(max)s bytes (%(size)s): split it")
                % {"max": MAX_DOCUMENT_BYTES, "size": size}
            ]
        )
    loader = None
    try:
        loader = _GuardedLoader(text)
        root = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or " ")
        message = (
            _("line %(line)s: not valid YAML: the control character %(code)s is not allowed")
            if code < 0x20 or 0x7F <= code <= 0x9F
            else _("line %(line)s: not valid YAML: the character %(code)s is not allowed")
        )
        raise PlaybookImportError([message % {"line": line, "code": f"U+{code:04X}"}]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise PlaybookImportError(
            [
                _("line %(line)s: not valid YAML: %(problem)s")
                % {"line": line, "problem": exc.problem}
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise PlaybookImportError(
            [_("line %(line)s: not valid YAML: %(problem)s") % {"line": 1, "problem": exc}]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise PlaybookImportError([_("line 1: the file is empty")])
    errors: list[str] = []
    data = _located(root, yaml.SafeLoader(""), errors)
    if errors:
        raise PlaybookImportError(errors)
    if not isinstance(data, dict):
        raise PlaybookImportError([_("line 1: expected a mapping with format, roles, playbooks")])
    return data


def yaml_document(text: str) -> dict:
    """A YAML mapping read with this module's guards (size, depth, no aliases), every
    problem raised as ``PlaybookImportError``; for the other data files of the library."""
    return _parse(text)


def playbooks_import_yaml(*, text: str, actor=None) -> ImportResult:
    data = _parse(text)
    c = _Checker()
    c.mapping(data, 1, "(file)", ("format", "playbooks"), ("roles", "stakeholder_groups"))
    if data.get("format") != FORMAT:
        c.err(data.lines.get("format", 1), "format", _("must be “%(format)s”") % {"format": FORMAT})

    languages = [code for code, _name in settings.LANGUAGES]
    roles_in_file: dict[str, dict] = {}
    for i, r in enumerate(c.get(data, "roles", "(file)", list, default=[]) or []):
        path = f"roles[{i}]"
        line = data["roles"].lines[i]
        if not c.mapping(
            r,
            line,
            path,
            ("slug", "name"),
            ("responsibilities", "can_approve_messages", "sort_order"),
        ):
            continue
        role = {
            "slug": c.get(r, "slug", path, str),
            "name": c.get(r, "name", path, str),
            "responsibilities": c.get(r, "responsibilities", path, str, default="") or "",
            "can_approve_messages": c.get(r, "can_approve_messages", path, bool, default=False),
            "sort_order": c.get(r, "sort_order", path, int, default=0),
        }
        c.model(CrisisRole(**role), r, path)
        if role["slug"] in roles_in_file:
            c.err(line, path, _("role “%(slug)s” is defined twice") % {"slug": role["slug"]})
        roles_in_file[role["slug"]] = role

    groups_in_file: dict[str, dict] = {}
    for i, g in enumerate(c.get(data, "stakeholder_groups", "(file)", list, default=[]) or []):
        path = f"stakeholder_groups[{i}]"
        line = data["stakeholder_groups"].lines[i]
        optional = ("priority", "preferred_channels", "default_language", "description", "public")
        if not c.mapping(g, line, path, ("slug", "name", "kind"), optional):
            continue
        group = {
            "slug": c.get(g, "slug", path, str),
            "name": c.get(g, "name", path, str),
            "kind": c.get(g, "kind", path, str, choices=StakeholderGroup.Kind.values),
            "priority": c.get(g, "priority", path, int, default=3),
            "preferred_channels": c.get(g, "preferred_channels", path, list, default=[]) or [],
            "default_language": c.get(
                g, "default_language", path, str, default="en", choices=languages
            ),
            "description": c.get(g, "description", path, str, default="") or "",
            "public": c.get(g, "public", path, bool, default=False),
        }
        c.model(StakeholderGroup(**group), g, path)
        groups_in_file[group["slug"]] = group

    known_roles = set(CrisisRole.objects.values_list("slug", flat=True)) | set(roles_in_file)
    known_groups = set(StakeholderGroup.objects.values_list("slug", flat=True)) | set(
        groups_in_file
    )
    plans = []
    seen_keys: set[tuple] = set()
    for i, p in enumerate(c.get(data, "playbooks", "(file)", list, default=[]) or []):
        path = f"playbooks[{i}]"
        line = data["playbooks"].lines[i]
        if not c.mapping(p, line, path, ("key", "title", "scenario"), _PLAYBOOK_FIELDS):
            continue
        plan = _check_playbook(c, p, path, languages, known_roles, known_groups)
        if (plan["key"], plan["version"]) in seen_keys:
            c.err(
                line,
                path,
                _("“%(key)s” version %(version)s appears twice")
                % {"key": plan["key"], "version": plan["version"]},
            )
        seen_keys.add((plan["key"], plan["version"]))
        plans.append(plan)
    if c.errors:
        raise PlaybookImportError(c.errors)

    with transaction.atomic():
        return _write(roles_in_file, groups_in_file, plans, actor)


def _check_playbook(c: _Checker, p, path, languages, known_roles, known_groups) -> dict:
    last_reviewed = p.get("last_reviewed_on")
    if isinstance(last_reviewed, str):
        try:
            last_reviewed = dt.date.fromisoformat(last_reviewed)
        except ValueError:
            c.err(
                p.lines["last_reviewed_on"],
                f"{path}.last_reviewed_on",
                _("expected a date like 2026-11-01"),
            )
            last_reviewed = None
    elif last_reviewed is not None and not isinstance(last_reviewed, dt.date):
        c.err(
            p.lines["last_reviewed_on"],
            f"{path}.last_reviewed_on",
            _("expected a date like 2026-11-01"),
        )
        last_reviewed = None
    owner = c.get(p, "owner", path, str, nullable=True)
    owner_user = None
    if owner:
        owner_user = User.objects.filter(username=owner).first()
        if owner_user is None:
            c.err(p.lines["owner"], f"{path}.owner", _("unknown user “%(name)s”") % {"name": owner})
    plan = {
        "key": c.get(p, "key", path, str),
        "version": c.get(p, "version", path, int, default=1),
        "title": c.get(p, "title", path, str),
        "scenario": c.get(p, "scenario", path, str, choices=Scenario.values),
        "status": c.get(p, "status", path, str, default="draft", choices=Playbook.Status.values),
        "summary": c.get(p, "summary", path, str, default="") or "",
        "severity_guidance": c.get(p, "severity_guidance", path, str, default="") or "",
        "owner": owner_user,
        "review_cycle_days": c.get(p, "review_cycle_days", path, int, default=180),
        "last_reviewed_on": last_reviewed,
        "first_statement_minutes": c.get(p, "first_statement_minutes", path, int, default=60),
        "escalation_repeat_count": c.get(p, "escalation_repeat_count", path, int, default=0),
        "page_at_once_max_severity": c.get(
            p, "page_at_once_max_severity", path, int, default=None, nullable=True
        ),
        "roll_call_minutes": c.get(
            p, "roll_call_minutes", path, int, default=DEFAULT_ROLL_CALL_MINUTES
        ),
        "reply_minutes": c.get(p, "reply_minutes", path, int, default=DEFAULT_REPLY_MINUTES),
        "reply_warn_minutes": c.get(
            p, "reply_warn_minutes", path, int, default=DEFAULT_REPLY_WARN_MINUTES
        ),
        # Checked whole by the model (Playbook.clean: reply_deadlines_errors).
        "reply_deadlines": [
            dict(e) if isinstance(e, dict) else e
            for e in c.get(p, "reply_deadlines", path, list, default=[]) or []
        ],
        "steps": [],
        "templates": [],
        "escalation": [],
        "cadences": [],
        # Where a refusal to publish is reported.
        "status_at": (p.lines.get("status", p.line), f"{path}.status"),
    }
    c.model(
        Playbook(**{k: plan[k] for k in _PLAYBOOK_MODEL_FIELDS}, version=plan["version"]), p, path
    )

    for j, s in enumerate(c.get(p, "steps", path, list, default=[]) or []):
        sp, line = f"{path}.steps[{j}]", p["steps"].lines[j]
        if not c.mapping(
            s, line, sp, ("phase", "title"), ("role", "due_offset_minutes", "instructions")
        ):
            continue
        role = c.get(s, "role", sp, str, nullable=True)
        if role and role not in known_roles:
            c.err(s.lines["role"], f"{sp}.role", _("unknown role “%(slug)s”") % {"slug": role})
        step = {
            "phase": c.get(s, "phase", sp, str, choices=Phase.values),
            "title": c.get(s, "title", sp, str),
            "role": role,
            "due_offset_minutes": c.get(s, "due_offset_minutes", sp, int, default=0),
            "instructions": c.get(s, "instructions", sp, str, default="") or "",
        }
        c.model(
            PlaybookStep(**{k: v for k, v in step.items() if k != "role"}, position=j + 1), s, sp
        )
        plan["steps"].append(step)

    names: set[tuple] = set()
    for j, t in enumerate(c.get(p, "templates", path, list, default=[]) or []):
        tp, line = f"{path}.templates[{j}]", p["templates"].lines[j]
        if not c.mapping(
            t, line, tp, ("name", "audience", "channel", "body"), ("language", "subject")
        ):
            continue
        tpl = {
            "name": c.get(t, "name", tp, str),
            "audience": c.get(t, "audience", tp, str),
            "channel": c.get(t, "channel", tp, str, choices=Channel.values),
            "language": c.get(t, "language", tp, str, default="en", choices=languages),
            "subject": c.get(t, "subject", tp, str, default="") or "",
            "body": c.get(t, "body", tp, str, default="") or "",
        }
        if tpl["audience"] and tpl["audience"] not in known_groups:
            c.err(
                t.lines["audience"],
                f"{tp}.audience",
                _("unknown stakeholder group “%(name)s”") % {"name": tpl["audience"]},
            )
        if (tpl["name"], tpl["language"]) in names:
            c.err(
                line,
                tp,
                _("a template “%(name)s” in “%(language)s” appears twice")
                % {"name": tpl["name"], "language": tpl["language"]},
            )
        names.add((tpl["name"], tpl["language"]))
        # The model's clean() checks the {placeholders} of subject and body.
        c.model(MessageTemplate(**{k: v for k, v in tpl.items() if k != "audience"}), t, tp)
        plan["templates"].append(tpl)

    positions: list[tuple[int, int, str]] = []
    for j, lv in enumerate(c.get(p, "escalation", path, list, default=[]) or []):
        lp, line = f"{path}.escalation[{j}]", p["escalation"].lines[j]
        if not c.mapping(
            lv, line, lp, ("delay_seconds", "target"), ("position", "role", "users", "rotation")
        ):
            continue
        level = {
            "delay_seconds": c.get(lv, "delay_seconds", lp, int),
            "target": c.get(lv, "target", lp, str, choices=EscalationLevel.Target.values),
        }
        # Levels are numbered by their order; a "position" may say so, and must agree.
        position = c.get(lv, "position", lp, int, default=j + 1)
        positions.append((position, lv.lines.get("position", line), f"{lp}.position"))
        target = level["target"]
        expected = {"role": "role", "users": "users", "rotation": "rotation"}.get(target)
        for other in ("role", "users", "rotation"):
            if target and other in lv and other != expected:
                c.err(
                    lv.lines[other],
                    f"{lp}.{other}",
                    _("does not go with target “%(target)s”") % {"target": target},
                )
        if target == "role":
            slug = c.get(lv, "role", lp, str)
            if slug is None or slug not in known_roles:
                c.err(
                    lv.lines.get("role", line),
                    f"{lp}.role",
                    _("unknown role “%(slug)s”") % {"slug": slug},
                )
            level["role"] = slug
        elif target == "rotation":
            name = c.get(lv, "rotation", lp, str)
            level["rotation"] = OnCallRotation.objects.filter(name=name).first()
            if level["rotation"] is None:
                c.err(
                    lv.lines.get("rotation", line),
                    f"{lp}.rotation",
                    _("unknown rotation “%(name)s”") % {"name": name},
                )
        elif target == "users":
            usernames = c.get(lv, "users", lp, list, default=[]) or []
            users = list(User.objects.filter(username__in=[str(u) for u in usernames]))
            missing = sorted({str(u) for u in usernames} - {u.get_username() for u in users})
            if missing or not usernames:
                c.err(
                    lv.lines.get("users", line),
                    f"{lp}.users",
                    (
                        _("unknown user(s) %(names)s") % {"names": ", ".join(missing)}
                        if missing
                        else _("names nobody")
                    ),
                )
            level["users"] = users
        c.model(
            EscalationLevel(delay_seconds=level["delay_seconds"], target=target, position=j + 1),
            lv,
            lp,
            run_clean=False,  # target/role/rotation are matched by name above
        )
        plan["escalation"].append(level)
    try:
        escalation_positions_validate([n for n, _line, _where in positions])
    except ValidationError as exc:
        first = next(
            (at for k, at in enumerate(positions) if at[0] != k + 1),
            positions[0] if positions else None,
        )
        if first is not None:
            for message in exc.messages:
                c.err(first[1], first[2], message)

    for j, cd in enumerate(c.get(p, "cadences", path, list, default=[]) or []):
        cp, line = f"{path}.cadences[{j}]", p["cadences"].lines[j]
        if not c.mapping(cd, line, cp, ("audience", "every_minutes"), ()):
            continue
        audience = c.get(cd, "audience", cp, str)
        if audience is not None and audience not in known_groups:
            c.err(
                cd.lines["audience"],
                f"{cp}.audience",
                _("unknown stakeholder group “%(name)s”") % {"name": audience},
            )
        every = c.get(cd, "every_minutes", cp, int)
        c.model(UpdateCadence(every_minutes=every), cd, cp)
        plan["cadences"].append({"audience": audience, "every_minutes": every})
    return plan


_PLAYBOOK_MODEL_FIELDS = (
    "key",
    "title",
    "scenario",
    "summary",
    "severity_guidance",
    "review_cycle_days",
    "last_reviewed_on",
    "first_statement_minutes",
    "escalation_repeat_count",
    "page_at_once_max_severity",
    "roll_call_minutes",
    "reply_minutes",
    "reply_warn_minutes",
    "reply_deadlines",
)


def _content(d: dict) -> dict:
    """What makes two versions the same playbook: everything but number, status, review, owner."""
    skip = ("version", "status", "last_reviewed_on", "owner")
    return {k: v for k, v in d.items() if k not in skip}


def _plan_as_dict(plan: dict) -> dict:
    as_dict = dict(plan)
    del as_dict["status_at"]
    as_dict["owner"] = plan["owner"].get_username() if plan["owner"] else None
    as_dict["last_reviewed_on"] = None
    as_dict["escalation"] = []
    for level in plan["escalation"]:
        entry = {"delay_seconds": level["delay_seconds"], "target": level["target"]}
        if level["target"] == "role":
            entry["role"] = level["role"]
        elif level["target"] == "rotation":
            entry["rotation"] = level["rotation"].name
        else:
            entry["users"] = sorted(u.get_username() for u in level["users"])
        as_dict["escalation"].append(entry)
    return as_dict


def _write(roles: dict, groups: dict, plans: list, actor) -> ImportResult:
    """Write what was checked; a playbook that cannot be published is reported at its
    ``status`` line, and then nothing is written (the caller's transaction rolls back)."""
    refused: list[str] = []
    result = ImportResult()
    for slug, role in roles.items():
        _obj, created = CrisisRole.objects.get_or_create(slug=slug, defaults=role)
        result.roles_created += created
    for slug, group in groups.items():
        _obj, created = StakeholderGroup.objects.get_or_create(slug=slug, defaults=group)
        result.groups_created += created
    role_by_slug = {r.slug: r for r in CrisisRole.objects.all()}
    group_by_slug = {g.slug: g for g in StakeholderGroup.objects.all()}

    for plan in plans:
        wanted = _content(_plan_as_dict(plan))
        versions = list(Playbook.objects.filter(key=plan["key"]).order_by("-version"))
        same = next((v for v in versions if _content(playbook_to_dict(v)) == wanted), None)
        if same is not None:
            result.unchanged.append(same)
            continue
        taken = {v.version for v in versions}
        version = plan["version"] if plan["version"] not in taken else max(taken) + 1
        playbook = Playbook.objects.create(
            key=plan["key"],
            version=version,
            title=plan["title"],
            scenario=plan["scenario"],
            summary=plan["summary"],
            severity_guidance=plan["severity_guidance"],
            owner=plan["owner"] or actor,
            review_cycle_days=plan["review_cycle_days"],
            last_reviewed_on=plan["last_reviewed_on"],
            first_statement_minutes=plan["first_statement_minutes"],
            escalation_repeat_count=plan["escalation_repeat_count"],
            page_at_once_max_severity=plan["page_at_once_max_severity"],
            roll_call_minutes=plan["roll_call_minutes"],
            reply_minutes=plan["reply_minutes"],
            reply_warn_minutes=plan["reply_warn_minutes"],
            reply_deadlines=plan["reply_deadlines"],
        )
        PlaybookStep.objects.bulk_create(
            PlaybookStep(
                playbook=playbook,
                position=n,
                phase=s["phase"],
                title=s["title"],
                role=role_by_slug.get(s["role"]) if s["role"] else None,
                due_offset_minutes=s["due_offset_minutes"],
                instructions=s["instructions"],
            )
            for n, s in enumerate(plan["steps"], start=1)
        )
        for t in plan["templates"]:
            MessageTemplate.objects.create(
                playbook=playbook,
                name=t["name"],
                audience=group_by_slug[t["audience"]],
                channel=t["channel"],
                language=t["language"],
                subject=t["subject"],
                body=t["body"],
            )
        for n, lv in enumerate(plan["escalation"], start=1):
            level = EscalationLevel.objects.create(
                playbook=playbook,
                position=n,
                delay_seconds=lv["delay_seconds"],
                target=lv["target"],
                role=role_by_slug.get(lv.get("role")) if lv.get("role") else None,
                rotation=lv.get("rotation"),
            )
            if lv["target"] == "users":
                level.users.set(lv["users"])
        for cd in plan["cadences"]:
            UpdateCadence.objects.create(
                playbook=playbook,
                audience=group_by_slug[cd["audience"]],
                every_minutes=cd["every_minutes"],
            )
        if plan["status"] == Playbook.Status.PUBLISHED:
            try:
                playbook = playbook_publish(playbook=playbook, actor=actor)
            except ValidationError as exc:
                line, where = plan["status_at"]
                refused += [
                    _("line %(line)s: %(path)s: %(problem)s")
                    % {"line": line, "path": where, "problem": message}
                    for message in exc.messages
                ]
                continue
            if plan["last_reviewed_on"]:
                Playbook.objects.filter(pk=playbook.pk).update(
                    last_reviewed_on=plan["last_reviewed_on"]
                )
                playbook.refresh_from_db()
        elif plan["status"] == Playbook.Status.RETIRED:
            playbook = playbook_retire(playbook=playbook)
        result.created.append(playbook)
    if refused:
        raise PlaybookImportError(refused)
    return result
