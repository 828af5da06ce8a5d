"""Loading the starter library and the demo desk; both are safe to run any number of times."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from playbooks.models import (
    CrisisRole,
    OnCallRotation,
    Playbook,
    Risk,
    RotationMember,
    Stakeholder,
    StakeholderGroup,
    inject_mentions_errors,
)
from playbooks.playbook_io import (
    ImportResult,
    PlaybookImportError,
    playbooks_import_yaml,
    yaml_document,
)
from playbooks.starter import INJECTS_FILE, STARTER_FILE

User = get_user_model()

DEMO_USERNAME = "demo"

# username, first, last, e-mail, roles held
DEMO_TEAM = [
    ("noa", "Noa", "Levi", ["crisis-manager", "scribe"]),
    ("eszter", "Eszter", "Kovács", ["communications-lead", "spokesperson"]),
    ("eleni", "Eleni", "Papadopoulou", ["technical-lead"]),
    ("david", "David", "Cohen", ["legal-counsel", "crisis-manager"]),
    ("zsofia", "Zsófia", "Nagy", ["communications-lead", "scribe"]),
    ("nikos", "Nikos", "Georgiou", ["technical-lead", "spokesperson"]),
    ("maria", "Maria", "Santos", ["executive-sponsor", "legal-counsel"]),
]

DEMO_RISKS = [
    # title, category, likelihood, impact, velocity, channels, playbook key, review in days
    (
        "Customer database exposed through a misconfigured backup",
        "data_breach",
        2,
        5,
        5,
        ["news_media", "social_media", "regulators"],
        "data-breach",
        60,
    ),
    (
        "Payment provider outage during a sales campaign",
        "service_outage",
        3,
        4,
        5,
        ["social_media", "customer_support", "website"],
        "service-outage",
        -10,
    ),
    (
        "Viral video of rude customer service",
        "social_media_storm",
        3,
        3,
        5,
        ["social_media", "news_media"],
        "social-media-storm",
        30,
    ),
    (
        "Wave of one-star reviews after a failed delivery week",
        "negative_reviews",
        4,
        3,
        3,
        ["review_sites", "search"],
        "negative-review-wave",
        -3,
    ),
    (
        "Battery defect in the portable charger line",
        "product_recall",
        1,
        5,
        4,
        ["news_media", "regulators", "customer_support"],
        "product-recall",
        90,
    ),
    (
        "Phishing campaign impersonating our brand",
        "data_breach",
        4,
        2,
        4,
        ["social_media", "customer_support"],
        "data-breach",
        45,
    ),
    (
        "Executive's offensive post resurfaces",
        "social_media_storm",
        2,
        4,
        5,
        ["social_media", "news_media", "internal"],
        "social-media-storm",
        120,
    ),
    (
        "Mobile app login failures after a release",
        "service_outage",
        4,
        3,
        4,
        ["review_sites", "social_media", "customer_support"],
        "service-outage",
        20,
    ),
    (
        "Regulator inquiry into consent records",
        "legal_regulatory",
        2,
        4,
        2,
        ["regulators", "news_media"],
        None,
        -30,
    ),
    (
        "Fake reviews accusation by a competitor",
        "negative_reviews",
        2,
        2,
        3,
        ["review_sites", "forums"],
        "negative-review-wave",
        100,
    ),
    (
        "Supplier contamination in a food product",
        "product_recall",
        1,
        4,
        4,
        ["regulators", "news_media"],
        "product-recall",
        150,
    ),
    (
        "Data-centre power loss",
        "service_outage",
        1,
        3,
        5,
        ["website", "customer_support"],
        "service-outage",
        200,
    ),
]

DEMO_CONTACTS = {
    "customers": [
        ("Anna Schmidt", "Key account", "anna.schmidt@example.com", "en"),
        ("יוסי מזרחי", "Premium customer", "yossi.mizrahi@example.com", "he"),
        ("Kovács Péter", "Kis- és középvállalatok", "peter.kovacs@example.com", "hu"),
        ("Γιώργος Νικολάου", "Εταιρικός πελάτης", "giorgos.nikolaou@example.com", "el"),
        ("Customer newsletter list", "", "customers@example.com", ""),
    ],
    "employees": [
        ("All staff", "", "all-staff@example.com", ""),
        ("Support team", "", "support-team@example.com", ""),
        ("Shop managers", "", "shop-managers@example.com", ""),
        ("Tel Aviv office", "", "tlv-office@example.com", "he"),
        ("Budapest office", "", "bud-office@example.com", "hu"),
    ],
    "media": [
        ("Tech desk", "Daily Chronicle", "tech@chronicle.example.com", "en"),
        ("חדשות כלכלה", "Globes Example", "economy@globes.example.com", "he"),
        ("Gazdasági rovat", "Példa Napló", "gazdasag@naplo.example.com", "hu"),
        ("Οικονομικό τμήμα", "Kathimerini Example", "oikonomia@kathimerini.example.com", "el"),
        ("Newswire", "Wire Service", "desk@wire.example.com", "en"),
    ],
    "regulators": [
        ("Data protection authority", "DPA", "breach-notification@dpa.example.org", "en"),
        ("Consumer safety office", "CSO", "recalls@consumer.example.org", "en"),
        ("רשות הגנת הפרטיות", "", "privacy@gov.example.org", "he"),
        ("Nemzeti Adatvédelmi Hatóság", "NAIH", "ugyfelszolgalat@naih.example.org", "hu"),
        ("Αρχή Προστασίας Δεδομένων", "", "complaints@dpa-gr.example.org", "el"),
    ],
    "investors": [
        ("Board of directors", "", "board@example.com", "en"),
        ("Investor relations list", "", "ir-list@example.com", "en"),
        ("Lead investor", "Example Ventures", "partner@ventures.example.com", "en"),
        ("Angel investor", "", "angel@example.net", "hu"),
        ("Analyst", "Example Securities", "analyst@securities.example.com", "en"),
    ],
    "partners": [
        ("Reseller network", "", "resellers@example.com", "en"),
        ("Payment provider", "PayExample", "incidents@payexample.com", "en"),
        ("Logistics partner", "ShipFast", "ops@shipfast.example.com", "el"),
        ("Integrator", "Example Systems", "support@systems.example.com", "he"),
        ("Retail chain", "Bolt Példa", "beszerzes@bolt.example.com", "hu"),
    ],
}


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str


def starter_load(*, actor=None) -> ImportResult:
    """Roles, stakeholder groups and the five starter playbooks; unchanged ones are skipped."""
    return playbooks_import_yaml(text=STARTER_FILE.read_text(encoding="utf-8"), actor=actor)


INJECTS_FORMAT = "crisisdesk-injects/1"
MAX_INJECT_MINUTES = 24 * 60
_INJECT_KEYS = {"offset_minutes", "title", "text", "roles", "mentions"}


def injects_read(text: str) -> dict[str, list[dict]]:
    """An inject library: {playbook key: [{offset_minutes, title, text, roles, mentions}]}.

    ``mentions``: sample public comments the inject brings into the listening inbox,
    checked with the inject's own field rule (``inject_mentions_errors``).

    Read with the playbook importer's guards; a malformed entry raises
    ``PlaybookImportError`` naming it (the starter file is checked by its tests).
    """
    data = yaml_document(text)
    errors = []
    if data.get("format") != INJECTS_FORMAT:
        errors.append(gettext("format: must be “%(f)s”") % {"f": INJECTS_FORMAT})
    library = data.get("injects")
    if not isinstance(library, dict):
        raise PlaybookImportError([*errors, gettext("injects: expected a mapping by playbook key")])
    out: dict[str, list[dict]] = {}
    for key, items in library.items():
        if not isinstance(items, list):
            errors.append(gettext("injects.%(key)s: expected a list") % {"key": key})
            continue
        out[key] = []
        for i, item in enumerate(items):
            where = f"injects.{key}[{i}]"
            if not isinstance(item, dict) or set(item) - _INJECT_KEYS:
                errors.append(
                    gettext("%(where)s: expected offset_minutes, title, text, roles and mentions")
                    % {"where": where}
                )
                continue
            offset, title, body = item.get("offset_minutes"), item.get("title"), item.get("text")
            roles = item.get("roles") or []
            if not isinstance(offset, int) or not 0 <= offset <= MAX_INJECT_MINUTES:
                errors.append(
                    gettext("%(where)s.offset_minutes: 0 to %(max)s")
                    % {"where": where, "max": MAX_INJECT_MINUTES}
                )
            if not isinstance(title, str) or not title.strip() or len(title) > 200:
                errors.append(
                    gettext("%(where)s.title: text of 1 to 200 characters") % {"where": where}
                )
            if not isinstance(body, str) or not body.strip() or len(body) > 4000:
                errors.append(
                    gettext("%(where)s.text: text of 1 to 4,000 characters") % {"where": where}
                )
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                errors.append(gettext("%(where)s.roles: a list of role slugs") % {"where": where})
            mentions = item.get("mentions") or []
            errors.extend(
                f"{where}.mentions: {problem}" for problem in inject_mentions_errors(mentions)
            )
            out[key].append(
                {
                    "offset_minutes": offset,
                    "title": str(title).strip(),
                    # The file wraps lines for reading; the inject is one paragraph.
                    "text": " ".join(str(body).split()),
                    "roles": list(roles),
                    "mentions": mentions,
                }
            )
    if errors:
        raise PlaybookImportError(errors)
    return out


@functools.cache
def _starter_injects() -> dict[str, list[dict]]:
    return injects_read(INJECTS_FILE.read_text(encoding="utf-8"))


def starter_injects(key: str) -> list[dict]:
    """The starter library's injects for a playbook key (a copy; empty if it has none)."""
    return [dict(item, roles=list(item["roles"])) for item in _starter_injects().get(key, [])]


def _demo_password() -> str:
    """Generated once and kept in var/, so the login printed on every start keeps working."""
    path = settings.VAR_DIR / "demo-login.txt"
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return password


def _last_monday_nine(now: dt.datetime) -> dt.datetime:
    local = now.astimezone(ZoneInfo("Europe/Budapest"))
    monday = (local - dt.timedelta(days=local.weekday() + 7)).date()
    return dt.datetime(monday.year, monday.month, monday.day, 9, tzinfo=ZoneInfo("Europe/Budapest"))


@transaction.atomic
def demo_seed() -> DemoLogin:
    """The starter library plus a demo team, rotations, risks and contacts, and the demo login."""
    starter_load()
    roles = {r.slug: r for r in CrisisRole.objects.all()}
    password = _demo_password()
    demo, _ = User.objects.get_or_create(
        username=DEMO_USERNAME,
        defaults={"first_name": "Demo", "last_name": "Lead", "email": "demo@example.com"},
    )
    demo.is_staff = demo.is_superuser = demo.is_active = True
    demo.set_password(password)
    demo.save()

    team = {}
    for username, first, last, role_slugs in DEMO_TEAM:
        user, _ = User.objects.get_or_create(
            username=username,
            defaults={
                "first_name": first, "last_name": last, "email": f"{username}@example.com",
                "is_staff": True,
            },
        )  # fmt: skip
        team[username] = user
        for slug in role_slugs:
            roles[slug].holders.add(user)
    for role in roles.values():
        role.holders.add(demo)

    start = _last_monday_nine(timezone.now())
    for role in roles.values():
        holders = sorted(
            (u for u in role.holders.all() if u.username != DEMO_USERNAME), key=lambda u: u.username
        )
        rotation, created = OnCallRotation.objects.get_or_create(
            role=role,
            name=f"{role.name} – weekly",
            defaults={"starts_at": start, "handoff_hours": 168, "timezone": "Europe/Budapest"},
        )
        if created:
            members = holders or [demo]
            for position, user in enumerate(members, start=1):
                RotationMember.objects.create(rotation=rotation, user=user, position=position)

    published = {p.key: p for p in Playbook.objects.filter(status=Playbook.Status.PUBLISHED)}
    owners = list(team.values())
    today = timezone.localdate()
    for n, (title, category, likelihood, impact, velocity, channels, key, review) in enumerate(
        DEMO_RISKS
    ):
        Risk.objects.get_or_create(
            title=title,
            defaults={
                "category": category, "likelihood": likelihood, "impact": impact,
                "velocity": velocity, "channels": channels, "owner": owners[n % len(owners)],
                "playbook": published.get(key) if key else None,
                "next_review_on": today + dt.timedelta(days=review),
                "mitigations": "Playbook rehearsed twice a year; monitoring alerts on mentions.",
                "status": Risk.Status.MITIGATING if n % 3 == 0 else Risk.Status.IDENTIFIED,
            },
        )  # fmt: skip

    for slug, contacts in DEMO_CONTACTS.items():
        group = StakeholderGroup.objects.get(slug=slug)
        for name, organisation, email, language in contacts:
            Stakeholder.objects.get_or_create(
                group=group,
                email=email,
                defaults={"name": name, "organisation": organisation, "language": language},
            )
    return DemoLogin(DEMO_USERNAME, password)
