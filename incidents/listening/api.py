"""REST API for listening: the signed intake, sources, mentions and rules."""

from __future__ import annotations

import json

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import ProtectedError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from crisisdesk.api import FILTERS, ModelPermissions, require
from incidents.api import ERRORS, VisibleIncidentField
from incidents.listening import inbox, services, signing
from incidents.listening.models import (
    MAX_TEXT_CHARS,
    ListeningRule,
    Mention,
    MentionChannel,
    Source,
)
from incidents.listening.selectors import mentions_visible_to, rules_visible_to, sources_visible_to
from incidents.models import Message
from playbooks.api import ModelCleanMixin
from playbooks.models import Channel, MessageTemplate

MAX_BODY_BYTES = 256 * 1024

# ------------------------------------------------------------------ intake


class MentionIntakeSerializer(serializers.Serializer):
    """The generic mention payload: one JSON object per request, or ``{"items": [...]}``."""

    id = serializers.CharField(
        max_length=200, help_text="Your id for the item: the same id again is accepted once."
    )
    channel = serializers.ChoiceField(choices=MentionChannel.choices, required=False)
    author = serializers.CharField(max_length=200, required=False, allow_blank=True)
    url = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    text = serializers.CharField(max_length=MAX_TEXT_CHARS)
    language = serializers.CharField(max_length=8, required=False, allow_blank=True)
    published_at = serializers.DateTimeField(required=False, allow_null=True)
    sentiment = serializers.FloatField(
        min_value=-1,
        max_value=1,
        required=False,
        allow_null=True,
        help_text="-1 (negative) to 1 (positive); computed from a small lexicon when absent.",
    )
    reach = serializers.IntegerField(min_value=0, max_value=10_000_000_000, required=False)

    def to_item(self) -> dict:
        data = dict(self.validated_data)
        data["external_id"] = data.pop("id")
        return data


class IntakeResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    mentions = serializers.ListField(child=serializers.IntegerField())
    fired = serializers.IntegerField(
        help_text="Rules that fired on these mentions (an incident opened or added to). "
        "Which incidents is not said: the sender holds a secret, not a person's permissions."
    )


def _generic_items(payload) -> list[dict]:
    raw = payload.get("items") if isinstance(payload, dict) and "items" in payload else [payload]
    if not isinstance(raw, list) or not raw:
        raise serializers.ValidationError({"items": [_("A non-empty list of mentions.")]})
    if len(raw) > services.MAX_ITEMS_PER_REQUEST:
        raise serializers.ValidationError(
            {"items": [_("At most %(n)s items.") % {"n": services.MAX_ITEMS_PER_REQUEST}]}
        )
    items = []
    for index, item in enumerate(raw):
        form = MentionIntakeSerializer(data=item if isinstance(item, dict) else {})
        if not form.is_valid():
            if len(raw) == 1:
                raise serializers.ValidationError(form.errors)
            raise serializers.ValidationError({f"items[{index}]": form.errors})
        items.append(form.to_item())
    return items


def _alertmanager_items(payload) -> list[dict]:
    """Alertmanager's webhook (version 4): each alert becomes one item, its fingerprint
    and status the id (so a firing and its resolution are two rows, a repeat of either
    none), its labels kept for the rules, its summary and description the text."""
    alerts = payload.get("alerts") if isinstance(payload, dict) else None
    if not isinstance(alerts, list) or not alerts:
        raise serializers.ValidationError({"alerts": [_("Expected Alertmanager's alerts list.")]})
    if len(alerts) > services.MAX_ITEMS_PER_REQUEST:
        raise serializers.ValidationError(
            {"alerts": [_("At most %(n)s alerts.") % {"n": services.MAX_ITEMS_PER_REQUEST}]}
        )
    common = payload.get("commonLabels") if isinstance(payload.get("commonLabels"), dict) else {}
    items = []
    for index, alert in enumerate(alerts):
        labels = alert.get("labels") if isinstance(alert, dict) else None
        status_ = alert.get("status") if isinstance(alert, dict) else None
        if not isinstance(labels, dict) or status_ not in ("firing", "resolved"):
            raise serializers.ValidationError(
                {f"alerts[{index}]": [_("An alert needs labels and a status firing or resolved.")]}
            )
        labels = {str(k)[:200]: str(v)[:200] for k, v in list({**common, **labels}.items())[:50]}
        annotations = alert.get("annotations") if isinstance(alert.get("annotations"), dict) else {}
        fingerprint = str(alert.get("fingerprint") or "")[:150]
        name = labels.get("alertname", "alert")
        text = " – ".join(
            str(part)
            for part in (name, annotations.get("summary"), annotations.get("description"))
            if part
        )[:MAX_TEXT_CHARS]
        try:
            started = parse_datetime(str(alert.get("startsAt") or "")[:40])
        except ValueError:
            started = None
        items.append(
            {
                "external_id": services.alert_external_id(
                    fingerprint=fingerprint,
                    status=status_,
                    starts_at=str(alert.get("startsAt") or "")[:40],
                ),
                "kind": Mention.Kind.ALERT,
                "channel": MentionChannel.ALERT,
                "author": str(labels.get("instance") or labels.get("job") or "")[:200],
                "url": str(alert.get("generatorURL") or "")[:2000],
                "text": text,
                "alert_status": status_,
                "labels": labels,
                "published_at": started,
            }
        )
    return items


class IntakeView(APIView):
    """``POST /api/v1/intake/<source-slug>/``: signed, size-bounded, idempotent per item."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="intake_create",
        summary="Receive mentions (or Alertmanager alerts) from a signed webhook",
        description=(
            "For sources of kind `webhook` the body is one mention (the schema below) or "
            '`{"items": [mention, …]}` with at most 100; for kind `alertmanager` it is '
            "Prometheus Alertmanager's webhook body (version 4: `alerts` with `status` firing "
            "or resolved, `labels`, `annotations.summary`/`description`, `fingerprint`).\n\n"
            "Signing: `X-CrisisDesk-Timestamp` is the Unix time in seconds; "
            "`X-CrisisDesk-Signature` is `sha256=` and the hex HMAC-SHA256, keyed with the "
            "source's secret, of the timestamp, a full stop and the raw body bytes "
            "(`<timestamp>.<body>`). A timestamp more than 300 s from the server's clock, a "
            "wrong signature or a signature already used is refused and nothing is written. "
            "A body is at most 262,144 bytes. An item whose `id` was received before is "
            "accepted again without a second row (counted in `duplicates`). Rules are "
            "evaluated before the answer: `fired` counts the rules that opened or added to an "
            "incident."
        ),
        request=MentionIntakeSerializer,
        parameters=[
            OpenApiParameter(
                signing.SIGNATURE_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True
            ),
            OpenApiParameter(
                signing.TIMESTAMP_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True
            ),
        ],
        responses={
            202: IntakeResultSerializer,
            400: OpenApiResponse(description="Invalid body: field messages"),
            401: OpenApiResponse(description="Missing or wrong signature, or a stale timestamp"),
            404: OpenApiResponse(description="No such source, or a disabled one"),
            409: OpenApiResponse(description="This signed request was received before"),
            413: OpenApiResponse(description="The body is larger than 262,144 bytes"),
        },
        auth=[],
    )
    def post(self, request, slug: str):
        now = timezone.now()
        # 1. The size, before reading or parsing anything.
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_BODY_BYTES:
            return self._refuse(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, _("The body is too large.")
            )
        body = request._request.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return self._refuse(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, _("The body is too large.")
            )
        # 2. The source and the signature, before parsing.
        source = Source.objects.filter(
            slug=slug[:50], enabled=True, kind__in=(Source.Kind.WEBHOOK, Source.Kind.ALERTMANAGER)
        ).first()
        if source is None:
            raise NotFound()
        try:
            digest = signing.signature_verify(
                source=source,
                body=body,
                signature=request.headers.get(signing.SIGNATURE_HEADER, ""),
                timestamp=request.headers.get(signing.TIMESTAMP_HEADER, ""),
                now=now,
            )
        except signing.SignatureRefused as exc:
            return self._refuse(status.HTTP_401_UNAUTHORIZED, str(exc))
        # 3. The payload.
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Response(
                {"non_field_errors": [_("The body is not JSON in UTF-8.")]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if source.kind == Source.Kind.ALERTMANAGER:
            items = _alertmanager_items(payload)
        else:
            items = _generic_items(payload)
        # 4. Write, evaluate, answer.
        try:
            result = services.mentions_receive(source=source, items=items, digest=digest, now=now)
        except signing.SignatureRefused as exc:
            return self._refuse(status.HTTP_409_CONFLICT, str(exc))
        answer = {
            "accepted": len(result.accepted),
            "duplicates": len(result.duplicates),
            "mentions": [m.pk for m in result.accepted + result.duplicates],
            "fired": len(result.fired),
        }
        return Response(answer, status=status.HTTP_202_ACCEPTED)

    @classmethod
    def _too_large(cls) -> Response:
        return cls._refuse(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            _("The body is larger than %(n)s bytes.") % {"n": MAX_BODY_BYTES},
        )

    @staticmethod
    def _refuse(code: int, message: str) -> Response:
        return Response({"detail": message}, status=code)


# ------------------------------------------------------------------ sources


class SourceSerializer(ModelCleanMixin, serializers.ModelSerializer):
    class Meta:
        model = Source
        fields = (
            "id", "name", "slug", "kind", "channel", "enabled", "feed_url", "poll_minutes",
            "healthy", "last_error", "failures", "last_polled_at", "next_poll_at", "created_at",
        )  # fmt: skip
        read_only_fields = (
            "healthy", "last_error", "failures", "last_polled_at", "next_poll_at", "created_at",
        )  # fmt: skip


class SourceWithSecretSerializer(SourceSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Shown here once: keep it; rotate it if lost."
    )

    class Meta(SourceSerializer.Meta):
        fields = (*SourceSerializer.Meta.fields, "secret")


class SourceViewSet(viewsets.ModelViewSet):
    """Where mentions come from. The webhook secret is shown once, on creation or rotation."""

    serializer_class = SourceSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("kind", "enabled", "healthy", "channel")
    search_fields = ("name", "slug")
    ordering_fields = ("name", "created_at", "next_poll_at")

    def get_queryset(self):
        return sources_visible_to(self.request.user).order_by("name", "pk")

    @extend_schema(responses={201: SourceWithSecretSerializer})
    def create(self, request, *args, **kwargs):
        form = SourceSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        source = services.source_create(**form.validated_data)
        return Response(SourceWithSecretSerializer(source).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: SourceWithSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new secret, shown once; the old one stops working at once."""
        require(request, "listening.change_source")
        source = services.source_rotate_secret(source=self.get_object())
        return Response(SourceWithSecretSerializer(source).data)

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError:
            raise serializers.ValidationError(
                {"non_field_errors": [_("It has mentions: disable it instead.")]}
            ) from None


# ------------------------------------------------------------------ mentions


class MentionSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    incident = serializers.SlugRelatedField(slug_field="reference", read_only=True)
    drill = serializers.SerializerMethodField(
        help_text="A drill comment: brought by an exercise inject into a drill incident."
    )

    class Meta:
        model = Mention
        fields = (
            "id", "drill", "source", "external_id", "kind", "channel", "author", "url", "text",
            "language", "sentiment", "sentiment_given", "reach", "published_at", "received_at",
            "alert_status", "labels", "risk", "incident",
            "state", "assignee", "no_reply_reason", "dismissed_reason", "triaged_at",
            "reply_due_at", "reply", "replied_at", "replied_via", "reply_url",
        )  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_drill(self, mention) -> bool:
        return bool(mention.incident_id and mention.incident.drill)


class MentionFilter(django_filters.FilterSet):
    source = django_filters.CharFilter(field_name="source__slug")
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    incident = django_filters.CharFilter(
        field_name="incident__reference", help_text="An incident's reference."
    )
    mine = django_filters.BooleanFilter(
        method="_mine", help_text="true: only the mentions assigned to you."
    )

    class Meta:
        model = Mention
        fields = (
            "source", "channel", "sentiment", "risk", "kind", "alert_status", "state",
            "assignee", "incident",
        )  # fmt: skip

    def _mine(self, queryset, name, value):
        return queryset.filter(assignee=self.request.user) if value else queryset


class AssignSerializer(serializers.Serializer):
    assignee = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.none(), allow_null=True,
        help_text="A user id who may view mentions, or null for nobody.",
    )  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = inbox.assignable_people()


class NeedsReplySerializer(serializers.Serializer):
    incident = VisibleIncidentField(
        required=False, allow_null=True,
        help_text="The incident it belongs to (needed when it has none yet).",
    )  # fmt: skip


class NoReplySerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=Mention.NoReplyReason.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=inbox.NOTE_MAX)


class DismissSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=inbox.NOTE_MAX)


class ReplyDraftSerializer(serializers.Serializer):
    template = serializers.PrimaryKeyRelatedField(
        queryset=MessageTemplate.objects.filter(channel=Channel.REPLY), required=False,
        allow_null=True, help_text="A reply template of the incident's playbook.",
    )  # fmt: skip
    body = serializers.CharField(
        required=False, allow_blank=True, max_length=Message.BODY_MAX,
        help_text="The reply written from scratch (without a template).",
    )  # fmt: skip


class ReplyPublishSerializer(serializers.Serializer):
    url = serializers.URLField(
        required=False, allow_blank=True, max_length=2000,
        help_text="The address of the reply as posted (CrisisDesk does not post it).",
    )  # fmt: skip
    by_email = serializers.BooleanField(required=False, default=False)


class MentionViewSet(viewsets.ReadOnlyModelViewSet):
    """Mentions as received, and the triage inbox's actions on them.

    One tied to an incident you may not see does not exist for you (404 like a made-up
    id). Triage (assign, needs-reply, no-reply, dismiss, reopen) needs *change mention*;
    drafting the reply *add message* and recording it published *change message*. The
    reply is a message (``reply``: its id): submit and approve it through
    ``/api/v1/messages/{id}/``, like any message, then record where it was published
    here."""

    serializer_class = MentionSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = MentionFilter
    search_fields = ("text", "author")
    ordering_fields = ("received_at", "published_at", "reach", "reply_due_at")

    def get_queryset(self):
        return (
            mentions_visible_to(self.request.user)
            .select_related("source", "incident")
            .order_by("-received_at", "-pk")
        )

    def _act(self, request, form_class, call, *, perm="listening.change_mention"):
        require(request, perm)
        mention = self.get_object()
        data = {}
        if form_class is not None:
            form = form_class(data=request.data, context=self.get_serializer_context())
            form.is_valid(raise_exception=True)
            data = form.validated_data
        call(mention, data)
        return Response(MentionSerializer(self.get_queryset().get(pk=mention.pk)).data)

    @extend_schema(request=AssignSerializer, responses={200: MentionSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):
        return self._act(
            request,
            AssignSerializer,
            lambda m, d: inbox.mention_assign(
                mention=m, actor=request.user, assignee=d["assignee"]
            ),
        )

    @extend_schema(request=NeedsReplySerializer, responses={200: MentionSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="needs-reply")
    def needs_reply(self, request, pk=None):
        """Needs a reply: its deadline from the playbook, and the timers that tell the
        communications lead before it is missed and escalate when it is."""
        return self._act(
            request,
            NeedsReplySerializer,
            lambda m, d: inbox.mention_needs_reply(
                mention=m, actor=request.user, incident=d.get("incident")
            ),
        )

    @extend_schema(request=NoReplySerializer, responses={200: MentionSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="no-reply")
    def no_reply(self, request, pk=None):
        return self._act(
            request,
            NoReplySerializer,
            lambda m, d: inbox.mention_no_reply(mention=m, actor=request.user, **d),
        )

    @extend_schema(request=DismissSerializer, responses={200: MentionSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def dismiss(self, request, pk=None):
        """A false positive: dismissed with its reason, never deleted."""
        return self._act(
            request,
            DismissSerializer,
            lambda m, d: inbox.mention_dismiss(mention=m, actor=request.user, **d),
        )

    @extend_schema(request=None, responses={200: MentionSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def reopen(self, request, pk=None):
        return self._act(
            request, None, lambda m, d: inbox.mention_reopen(mention=m, actor=request.user)
        )

    @extend_schema(request=ReplyDraftSerializer, responses={200: MentionSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="reply")
    def reply_draft(self, request, pk=None):
        """Draft the reply from a reply template (in the comment's language when the
        playbook has it) or from ``body``; approve it as a message."""
        return self._act(
            request,
            ReplyDraftSerializer,
            lambda m, d: inbox.reply_draft(
                mention=m, author=request.user, template=d.get("template"), body=d.get("body", "")
            ),
            perm="incidents.add_message",
        )

    @extend_schema(request=ReplyPublishSerializer, responses={200: MentionSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="reply/published")
    def reply_published(self, request, pk=None):
        """The approved reply was posted (its address) or sent by e-mail."""
        return self._act(
            request,
            ReplyPublishSerializer,
            lambda m, d: inbox.reply_publish(mention=m, actor=request.user, **d),
            perm="incidents.change_message",
        )


# ------------------------------------------------------------------ rules


class ListeningRuleSerializer(ModelCleanMixin, serializers.ModelSerializer):
    keywords = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=50, required=False
    )
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=MentionChannel.choices), max_length=20, required=False
    )
    alert_labels = serializers.DictField(
        child=serializers.CharField(max_length=200), required=False
    )

    class Meta:
        model = ListeningRule
        fields = (
            "id", "risk", "name", "enabled", "keywords", "channels", "alert_labels",
            "window_minutes", "threshold_count", "negative_percent", "min_mentions", "severity",
            "last_fired_at", "created_at",
        )  # fmt: skip
        read_only_fields = ("last_fired_at", "created_at")


class ListeningRuleViewSet(
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.ReadOnlyModelViewSet,
):
    """Per risk: keywords, channels and thresholds that open an incident."""

    serializer_class = ListeningRuleSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("risk", "enabled")
    search_fields = ("name",)
    ordering_fields = ("name", "created_at", "last_fired_at")

    def get_queryset(self):
        return rules_visible_to(self.request.user).order_by("risk", "name", "pk")
