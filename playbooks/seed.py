"""Loading the starter library and the demo desk; both are safe to run any number of times."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from playbooks.models import (
    CrisisRole,
    OnCallRotation,
    Playbook,
    Risk,
    RotationMember,
    Stakeholder,
    StakeholderGroup,
)
from playbooks.playbook_io import ImportResult, playbooks_import_yaml
from playbooks.starter import STARTER_FILE

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
