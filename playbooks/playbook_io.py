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
from django.core.exceptions import ValidationError
from django.db import transaction

from playbooks.models import (
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


class _Loc(dict):
    """A mapping from the file, remembering the line of itself and of each key."""

    line: int
    lines: dict


class _LocList(list):
    line: int
    lines: list


_constructor = yaml.SafeLoader("")


def _located(node):
    if isinstance(node, yaml.MappingNode):
        out = _Loc()
        out.line, out.lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            key = _constructor.construct_object(key_node, deep=True)
            if key in out:
                raise PlaybookImportError(
                    [f"line {key_node.start_mark.line + 1}: key “{key}” appears twice"]
                )
            out[key] = _located(value_node)
            out.lines[key] = value_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        items = _LocList(_located(n) for n in node.value)
        items.line = node.start_mark.line + 1
        items.lines = [n.start_mark.line + 1 for n in node.value]
        return items
    return _constructor.construct_object(node, deep=True)


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, line: int, path: str, message: str) -> None:
        self.errors.append(f"line {line}: {path}: {message}")

    def mapping(self, value, line: int, path: str, required: tuple, optional: tuple) -> bool:
        if not isinstance(value, dict):
            self.err(line, path, "expected a mapping (key: value lines)")
            return False
        ok = True
        for key in required:
            if key not in value:
                self.err(getattr(value, "line", line), path, f"“{key}” is missing")
                ok = False
        for key in value:
            if key not in required and key not in optional:
                self.err(value.lines.get(key, line), f"{path}.{key}", "unknown field")
                ok = False
        return ok

    def get(
        self,
        m,
        key: str,
        path: str,
        kind,
        *,
        default=None,
        choices=None,
        nullable=False,
        minimum=None,
        max_length=None,
    ):
        if key not in m:
            return default
        value, line = m[key], m.lines.get(key, m.line)
        where = f"{path}.{key}"
        if value is None:
            if not nullable:
                self.err(line, where, "must not be empty")
            return None
        if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.err(line, where, f"expected a whole number, got {value!r}")
            return default
        if kind is bool and not isinstance(value, bool):
            self.err(line, where, f"expected true or false, got {value!r}")
            return default
        if kind is str and not isinstance(value, str):
            self.err(line, where, f"expected text, got {type(value).__name__}")
            return default
        if kind is list and not isinstance(value, list):
            self.err(line, where, "expected a list")
            return default
        if choices is not None and value not in choices:
            self.err(line, where, f"“{value}” is not one of: {', '.join(map(str, choices))}")
            return default
        if minimum is not None and value < minimum:
            self.err(line, where, f"must be at least {minimum}")
        if max_length is not None and len(value) > max_length:
            self.err(line, where, f"is longer than {max_length} characters")
        return value


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
    "steps",
    "templates",
    "escalation",
    "cadences",
)


def _parse(text: str) -> dict:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PlaybookImportError([f"line {line}: not valid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise PlaybookImportError([f"line 0: not valid YAML: {exc}"]) from None
    if root is None:
        raise PlaybookImportError(["line 1: the file is empty"])
    data = _located(root)
    if not isinstance(data, dict):
        raise PlaybookImportError(["line 1: expected a mapping with format, roles, playbooks"])
    return data


def playbooks_import_yaml(*, text: str, actor=None) -> ImportResult:
    data = _parse(text)
    c = _Checker()
    c.mapping(data, 1, "(file)", ("format", "playbooks"), ("roles", "stakeholder_groups"))
    if data.get("format") != FORMAT:
        c.err(data.lines.get("format", 1), "format", f"must be “{FORMAT}”")

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
            "slug": c.get(r, "slug", path, str, max_length=50),
            "name": c.get(r, "name", path, str, max_length=100),
            "responsibilities": c.get(r, "responsibilities", path, str, default="") or "",
            "can_approve_messages": c.get(r, "can_approve_messages", path, bool, default=False),
            "sort_order": c.get(r, "sort_order", path, int, default=0, minimum=0),
        }
        if role["slug"] in roles_in_file:
            c.err(line, path, f"role “{role['slug']}” is defined twice")
        roles_in_file[role["slug"]] = role

    groups_in_file: dict[str, dict] = {}
    for i, g in enumerate(c.get(data, "stakeholder_groups", "(file)", list, default=[]) or []):
        path = f"stakeholder_groups[{i}]"
        line = data["stakeholder_groups"].lines[i]
        optional = ("priority", "preferred_channels", "default_language", "description")
        if not c.mapping(g, line, path, ("slug", "name", "kind"), optional):
            continue
        group = {
            "slug": c.get(g, "slug", path, str, max_length=50),
            "name": c.get(g, "name", path, str, max_length=120),
            "kind": c.get(g, "kind", path, str, choices=StakeholderGroup.Kind.values),
            "priority": c.get(g, "priority", path, int, default=3, minimum=1),
            "preferred_channels": c.get(g, "preferred_channels", path, list, default=[]) or [],
            "default_language": c.get(
                g, "default_language", path, str, default="en", choices=languages
            ),
            "description": c.get(g, "description", path, str, default="") or "",
        }
        for ch in group["preferred_channels"]:
            if ch not in Channel.values:
                c.err(
                    g.lines.get("preferred_channels", line),
                    f"{path}.preferred_channels",
                    f"“{ch}” is not a channel",
                )
        if group["priority"] and group["priority"] > 5:
            c.err(g.lines.get("priority", line), f"{path}.priority", "must be 1 to 5")
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
            c.err(line, path, f"“{plan['key']}” version {plan['version']} appears twice")
        seen_keys.add((plan["key"], plan["version"]))
        plans.append(plan)
    if c.errors:
        raise PlaybookImportError(c.errors)

    try:
        with transaction.atomic():
            return _write(roles_in_file, groups_in_file, plans, actor)
    except ValidationError as exc:
        raise PlaybookImportError([f"line 0: {m}" for m in exc.messages]) from None


def _check_playbook(c: _Checker, p, path, languages, known_roles, known_groups) -> dict:
    last_reviewed = p.get("last_reviewed_on")
    if isinstance(last_reviewed, str):
        try:
            last_reviewed = dt.date.fromisoformat(last_reviewed)
        except ValueError:
            c.err(
                p.lines["last_reviewed_on"],
                f"{path}.last_reviewed_on",
                "expected a date like 2026-11-01",
            )
            last_reviewed = None
    elif last_reviewed is not None and not isinstance(last_reviewed, dt.date):
        c.err(
            p.lines["last_reviewed_on"],
            f"{path}.last_reviewed_on",
            "expected a date like 2026-11-01",
        )
        last_reviewed = None
    owner = c.get(p, "owner", path, str, nullable=True)
    owner_user = None
    if owner:
        owner_user = User.objects.filter(username=owner).first()
        if owner_user is None:
            c.err(p.lines["owner"], f"{path}.owner", f"unknown user “{owner}”")
    plan = {
        "key": c.get(p, "key", path, str, max_length=80),
        "version": c.get(p, "version", path, int, default=1, minimum=1),
        "title": c.get(p, "title", path, str, max_length=200),
        "scenario": c.get(p, "scenario", path, str, choices=Scenario.values),
        "status": c.get(p, "status", path, str, default="draft", choices=Playbook.Status.values),
        "summary": c.get(p, "summary", path, str, default="") or "",
        "severity_guidance": c.get(p, "severity_guidance", path, str, default="") or "",
        "owner": owner_user,
        "review_cycle_days": c.get(p, "review_cycle_days", path, int, default=180, minimum=1),
        "last_reviewed_on": last_reviewed,
        "first_statement_minutes": c.get(
            p, "first_statement_minutes", path, int, default=60, minimum=1
        ),
        "escalation_repeat_count": c.get(
            p, "escalation_repeat_count", path, int, default=0, minimum=0
        ),
        "steps": [],
        "templates": [],
        "escalation": [],
        "cadences": [],
    }

    for j, s in enumerate(c.get(p, "steps", path, list, default=[]) or []):
        sp, line = f"{path}.steps[{j}]", p["steps"].lines[j]
        if not c.mapping(
            s, line, sp, ("phase", "title"), ("role", "due_offset_minutes", "instructions")
        ):
            continue
        role = c.get(s, "role", sp, str, nullable=True)
        if role and role not in known_roles:
            c.err(s.lines["role"], f"{sp}.role", f"unknown role “{role}”")
        plan["steps"].append(
            {
                "phase": c.get(s, "phase", sp, str, choices=Phase.values),
                "title": c.get(s, "title", sp, str, max_length=200),
                "role": role,
                "due_offset_minutes": c.get(s, "due_offset_minutes", sp, int, default=0, minimum=0),
                "instructions": c.get(s, "instructions", sp, str, default="") or "",
            }
        )

    names: set[tuple] = set()
    for j, t in enumerate(c.get(p, "templates", path, list, default=[]) or []):
        tp, line = f"{path}.templates[{j}]", p["templates"].lines[j]
        if not c.mapping(
            t, line, tp, ("name", "audience", "channel", "body"), ("language", "subject")
        ):
            continue
        tpl = {
            "name": c.get(t, "name", tp, str, max_length=200),
            "audience": c.get(t, "audience", tp, str),
            "channel": c.get(t, "channel", tp, str, choices=Channel.values),
            "language": c.get(t, "language", tp, str, default="en", choices=languages),
            "subject": c.get(t, "subject", tp, str, default="", max_length=300) or "",
            "body": c.get(t, "body", tp, str, default="") or "",
        }
        if tpl["audience"] and tpl["audience"] not in known_groups:
            c.err(
                t.lines["audience"],
                f"{tp}.audience",
                f"unknown stakeholder group “{tpl['audience']}”",
            )
        if (tpl["name"], tpl["language"]) in names:
            c.err(line, tp, f"a template “{tpl['name']}” in “{tpl['language']}” appears twice")
        names.add((tpl["name"], tpl["language"]))
        for fld in ("subject", "body"):
            try:
                used = MessageTemplate.placeholders_in(tpl[fld])
            except ValueError as exc:
                c.err(t.lines.get(fld, line), f"{tp}.{fld}", str(exc))
                continue
            unknown = sorted(set(used) - set(MessageTemplate.PLACEHOLDERS))
            if unknown:
                c.err(
                    t.lines.get(fld, line),
                    f"{tp}.{fld}",
                    "unknown placeholder(s) " + ", ".join("{%s}" % u for u in unknown),
                )
        plan["templates"].append(tpl)

    for j, lv in enumerate(c.get(p, "escalation", path, list, default=[]) or []):
        lp, line = f"{path}.escalation[{j}]", p["escalation"].lines[j]
        if not c.mapping(lv, line, lp, ("delay_seconds", "target"), ("role", "users", "rotation")):
            continue
        level = {
            "delay_seconds": c.get(lv, "delay_seconds", lp, int, minimum=0),
            "target": c.get(lv, "target", lp, str, choices=EscalationLevel.Target.values),
        }
        target = level["target"]
        expected = {"role": "role", "users": "users", "rotation": "rotation"}.get(target)
        for other in ("role", "users", "rotation"):
            if other in lv and other != expected:
                c.err(lv.lines[other], f"{lp}.{other}", f"does not go with target “{target}”")
        if target == "role":
            slug = c.get(lv, "role", lp, str)
            if slug is None or slug not in known_roles:
                c.err(lv.lines.get("role", line), f"{lp}.role", f"unknown role “{slug}”")
            level["role"] = slug
        elif target == "rotation":
            name = c.get(lv, "rotation", lp, str)
            level["rotation"] = OnCallRotation.objects.filter(name=name).first()
            if level["rotation"] is None:
                c.err(
                    lv.lines.get("rotation", line), f"{lp}.rotation", f"unknown rotation “{name}”"
                )
        elif target == "users":
            usernames = c.get(lv, "users", lp, list, default=[]) or []
            users = list(User.objects.filter(username__in=[str(u) for u in usernames]))
            missing = sorted({str(u) for u in usernames} - {u.get_username() for u in users})
            if missing or not usernames:
                c.err(
                    lv.lines.get("users", line),
                    f"{lp}.users",
                    f"unknown user(s) {', '.join(missing)}" if missing else "names nobody",
                )
            level["users"] = users
        plan["escalation"].append(level)

    for j, cd in enumerate(c.get(p, "cadences", path, list, default=[]) or []):
        cp, line = f"{path}.cadences[{j}]", p["cadences"].lines[j]
        if not c.mapping(cd, line, cp, ("audience", "every_minutes"), ()):
            continue
        audience = c.get(cd, "audience", cp, str)
        if audience not in known_groups:
            c.err(cd.lines["audience"], f"{cp}.audience", f"unknown stakeholder group “{audience}”")
        plan["cadences"].append(
            {"audience": audience, "every_minutes": c.get(cd, "every_minutes", cp, int, minimum=1)}
        )
    return plan


def _content(d: dict) -> dict:
    """What makes two versions the same playbook: everything but number, status, review, owner."""
    skip = ("version", "status", "last_reviewed_on", "owner")
    return {k: v for k, v in d.items() if k not in skip}


def _plan_as_dict(plan: dict) -> dict:
    as_dict = dict(plan)
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
    from playbooks.services import playbook_publish

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
            playbook = playbook_publish(playbook=playbook, actor=actor)
            if plan["last_reviewed_on"]:
                Playbook.objects.filter(pk=playbook.pk).update(
                    last_reviewed_on=plan["last_reviewed_on"]
                )
                playbook.refresh_from_db()
        elif plan["status"] == Playbook.Status.RETIRED:
            from playbooks.services import playbook_retire

            playbook = playbook_retire(playbook=playbook)
        result.created.append(playbook)
    return result
