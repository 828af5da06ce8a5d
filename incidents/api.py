"""REST API for response: incidents and everything recorded on them.

Every queryset, and every field that names a record of an incident, reads through
the visibility selectors (incidents/selectors.py): a confidential incident and all
its tasks, timeline, messages, timers, notifications, post-mortem and action items
are invisible (404, absent from lists, filters, search and the browsable API's
forms) to anyone not allowed to see it. Every write calls the same service as the
admin.
"""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.forms import ModelChoiceField
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_filters.widgets import CSVWidget
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from crisisdesk.api import FILTERS, IdsFilter, ModelPermissions, require, service_response
from incidents import comms, exercises, postmortem, services, subscribers
from incidents.models import (
    EXERCISE_BRIEF_MAX,
    EXERCISE_MAX_PARTICIPANTS,
    INJECT_TEXT_MAX,
    MAX_INJECT_OFFSET_SECONDS,
    MAX_INJECTS,
    ActionItem,
    Exercise,
    ExerciseParticipant,
    Incident,
    Inject,
    Message,
    Notification,
    PostMortem,
    PostMortemRevision,
    RoleAssignment,
    Subscription,
    Task,
    TimelineEntry,
    Timer,
)
from incidents.selectors import (
    action_items_visible_to,
    assignments_visible_to,
    exercise_may_run,
    exercises_visible_to,
    incidents_visible_to,
    message_delivery,
    messages_visible_to,
    notifications_visible_to,
    postmortems_visible_to,
    subscriptions_visible_to,
    tasks_visible_to,
    timeline_visible_to,
    timers_visible_to,
)
from playbooks.models import CrisisRole, Playbook, StakeholderGroup

ERRORS = {
    400: OpenApiResponse(description="Invalid input: field messages"),
    403: OpenApiResponse(description="No permission"),
    404: OpenApiResponse(description="Not found, or not visible to you"),
}


@extend_schema_field(OpenApiTypes.INT)
class VisibleIncidentField(serializers.PrimaryKeyRelatedField):
    """An incident id the user may see. Any other id reads as not existing, with the
    same message as a made-up one, so existence never leaks."""

    def get_queryset(self):
        return incidents_visible_to(self.context["request"].user)


def _visible_for_filter(request):
    return incidents_visible_to(request.user) if request is not None else Incident.objects.none()


def scoped_filterset(model, fields: tuple[str, ...]):
    """A FilterSet whose ?incident= accepts only visible incidents, answering exactly
    as for an id that does not exist."""
    import django_filters

    attrs = {
        "incident": django_filters.ModelChoiceFilter(queryset=_visible_for_filter),
        "Meta": type("Meta", (), {"model": model, "fields": fields}),
    }
    return type(f"{model.__name__}FilterSet", (django_filters.FilterSet,), attrs)


# ------------------------------------------------------------------ incidents


class IncidentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Incident
        fields = (
            "id", "reference", "title", "public_title", "summary", "severity", "status",
            "category", "confidential", "drill", "playbook", "first_statement_minutes",
            "opened_by",
            "acknowledged_by", "detected_at", "opened_at", "acknowledged_at",
            "first_statement_at", "contained_at", "resolved_at", "closed_at",
            "escalation_round", "first_paged_at", "updated_at",
        )  # fmt: skip
        read_only_fields = fields


class IncidentOpenSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300)
    summary = serializers.CharField(required=False, allow_blank=True, default="")
    severity = serializers.IntegerField(min_value=1, max_value=4, default=2)
    playbook = serializers.PrimaryKeyRelatedField(
        queryset=Playbook.objects.all(), required=False, allow_null=True
    )
    category = serializers.CharField(required=False, allow_null=True, default=None)
    confidential = serializers.BooleanField(default=False)
    drill = serializers.BooleanField(default=False)
    detected_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class SeveritySerializer(serializers.Serializer):
    severity = serializers.IntegerField(min_value=1, max_value=4)
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class PublicTitleSerializer(serializers.Serializer):
    public_title = serializers.CharField(max_length=300, allow_blank=True)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class ResolveSerializer(serializers.Serializer):
    summary = serializers.CharField(required=False, allow_blank=True, default="")


class PostMortemSerializer(serializers.ModelSerializer):
    class Meta:
        model = PostMortem
        fields = (
            "id", "incident", "status", "revision", *PostMortem.NARRATIVE, "created_at",
            "updated_at", "submitted_at", "published_at", "published_by",
        )  # fmt: skip
        read_only_fields = fields


class IncidentViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Incidents: open one (from a published playbook or ad hoc) and drive its life cycle."""

    serializer_class = IncidentSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("status", "severity", "category", "confidential", "drill", "playbook")
    search_fields = ("reference", "title", "summary")
    ordering_fields = ("opened_at", "severity", "status", "reference")
    ordering = ("-opened_at",)

    def get_queryset(self):
        return incidents_visible_to(self.request.user).order_by("-opened_at", "pk")

    @extend_schema(
        request=IncidentOpenSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description=(
                    "Retrying with the same key (yours alone) returns the same incident, "
                    "while you may still see it."
                ),
            )
        ],
        responses={201: IncidentSerializer, 200: IncidentSerializer, **ERRORS},
    )
    def create(self, request, *args, **kwargs):
        form = IncidentOpenSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        incident = services.incident_open(
            actor=request.user,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            **form.validated_data,
        )
        code = status.HTTP_200_OK if incident.replayed else status.HTTP_201_CREATED
        return Response(self.get_serializer(incident).data, status=code)

    def _act(self, request, call, *, perm="incidents.change_incident"):
        require(request, perm)
        incident = self.get_object()
        return service_response(
            lambda: call(incident) or Incident.objects.get(pk=incident.pk),
            IncidentSerializer,
            context=self.get_serializer_context(),
        )

    @extend_schema(request=None, responses={200: IncidentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Acknowledge: stop the escalation (a no-op if it was not waiting for one)."""
        return self._act(
            request,
            lambda i: (
                services.incident_acknowledge(incident=i, actor=request.user, via="api") and None
            ),
            perm="incidents.acknowledge_incident",
        )

    @extend_schema(request=SeveritySerializer, responses={200: IncidentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def severity(self, request, pk=None):
        form = SeveritySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._act(
            request,
            lambda i: services.incident_change_severity(
                incident=i, actor=request.user, **form.validated_data
            ),
        )

    @extend_schema(request=PublicTitleSerializer, responses={200: IncidentSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="public-title")
    def public_title(self, request, pk=None):
        """What the public status page calls the incident; empty: a neutral title."""
        form = PublicTitleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._act(
            request,
            lambda i: services.incident_set_public_title(
                incident=i, actor=request.user, **form.validated_data
            ),
        )

    @extend_schema(request=None, responses={200: IncidentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def contain(self, request, pk=None):
        return self._act(
            request, lambda i: services.incident_contain(incident=i, actor=request.user)
        )

    @extend_schema(request=ResolveSerializer, responses={200: IncidentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """Resolve: cancels every pending timer and starts the post-mortem."""
        form = ResolveSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._act(
            request,
            lambda i: services.incident_resolve(
                incident=i, actor=request.user, **form.validated_data
            ),
        )

    @extend_schema(request=None, responses={200: IncidentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        return self._act(request, lambda i: services.incident_close(incident=i, actor=request.user))

    @extend_schema(request=None, responses={200: PostMortemSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="start-postmortem")
    def start_postmortem(self, request, pk=None):
        """Start the post-mortem now (resolving starts it anyway); returns it."""
        require(request, "incidents.add_postmortem")
        incident = self.get_object()
        return service_response(
            lambda: postmortem.postmortem_start(incident=incident, actor=request.user),
            PostMortemSerializer,
            context=self.get_serializer_context(),
        )

    @extend_schema(request=ReasonSerializer, responses={200: IncidentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def reopen(self, request, pk=None):
        """Reopen: a fresh escalation round starts at level 1."""
        form = ReasonSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._act(
            request,
            lambda i: services.incident_reopen(
                incident=i, actor=request.user, **form.validated_data
            ),
        )


# ------------------------------------------------------------------ records on an incident


class TaskSerializer(serializers.ModelSerializer):
    is_late = serializers.BooleanField(read_only=True)

    class Meta:
        model = Task
        fields = (
            "id", "incident", "position", "phase", "title", "instructions", "role",
            "assignee", "due_at", "status", "done_at", "done_by", "is_late",
        )  # fmt: skip
        read_only_fields = fields


class TaskCompleteSerializer(serializers.Serializer):
    skipped = serializers.BooleanField(default=False)
    note = serializers.CharField(required=False, allow_blank=True, default="")


class TaskViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TaskSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = scoped_filterset(Task, ("incident", "status", "role", "assignee", "phase"))
    search_fields = ("title",)
    ordering_fields = ("position", "due_at", "done_at")

    def get_queryset(self):
        return tasks_visible_to(self.request.user).order_by("incident", "position", "pk")

    @extend_schema(request=TaskCompleteSerializer, responses={200: TaskSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        """Mark done (or skipped, with "skipped": true)."""
        require(request, "incidents.change_task")
        form = TaskCompleteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        task = self.get_object()
        return service_response(
            lambda: services.task_complete(task=task, actor=request.user, **form.validated_data),
            TaskSerializer,
            context=self.get_serializer_context(),
        )


class AssignmentSerializer(serializers.ModelSerializer):
    incident = VisibleIncidentField()

    class Meta:
        model = RoleAssignment
        fields = (
            "id", "incident", "role", "user", "assumed_at", "relieved_at", "assigned_by",
            "answer", "answered_at", "chased_at", "offered_to",
        )  # fmt: skip
        read_only_fields = (
            "assumed_at", "relieved_at", "assigned_by",
            "answer", "answered_at", "chased_at", "offered_to",
        )  # fmt: skip


class AssignmentViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Who held which role on an incident, and when. POST hands a role to someone."""

    serializer_class = AssignmentSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = scoped_filterset(RoleAssignment, ("incident", "role", "user"))
    ordering_fields = ("assumed_at",)

    def get_queryset(self):
        return assignments_visible_to(self.request.user).order_by("incident", "assumed_at")

    @extend_schema(request=AssignmentSerializer, responses={201: AssignmentSerializer, **ERRORS})
    def create(self, request, *args, **kwargs):
        form = AssignmentSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        incident = form.validated_data["incident"]
        return service_response(
            lambda: services.role_assign(
                incident=incident,
                role=form.validated_data["role"],
                user=form.validated_data["user"],
                actor=request.user,
            ),
            AssignmentSerializer,
            context=self.get_serializer_context(),
            code=201,
        )

    @extend_schema(request=None, responses={200: AssignmentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def relieve(self, request, pk=None):
        require(request, "incidents.change_roleassignment")
        assignment = self.get_object()
        return service_response(
            lambda: (
                services.role_relieve(
                    incident=assignment.incident, role=assignment.role, actor=request.user
                )
                or assignment
            ),
            AssignmentSerializer,
            context=self.get_serializer_context(),
        )


@extend_schema_field(OpenApiTypes.INT)
class VisibleEntryField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return timeline_visible_to(self.context["request"].user)


class TimelineEntrySerializer(serializers.ModelSerializer):
    incident = VisibleIncidentField()
    corrects = VisibleEntryField(required=False, allow_null=True)

    class Meta:
        model = TimelineEntry
        fields = ("id", "incident", "at", "kind", "actor", "text", "data", "corrects")
        read_only_fields = ("at", "kind", "actor", "data")


class TimelineViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """The append-only record. POST adds a note (or, with `corrects`, a correction)."""

    serializer_class = TimelineEntrySerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = scoped_filterset(TimelineEntry, ("incident", "kind", "actor"))
    search_fields = ("text",)
    ordering_fields = ("at",)

    def get_queryset(self):
        return timeline_visible_to(self.request.user).order_by("incident", "at", "pk")

    @extend_schema(
        request=TimelineEntrySerializer, responses={201: TimelineEntrySerializer, **ERRORS}
    )
    def create(self, request, *args, **kwargs):
        form = TimelineEntrySerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        incident = form.validated_data["incident"]
        return service_response(
            lambda: services.note_add(
                incident=incident,
                actor=request.user,
                text=form.validated_data["text"],
                corrects=form.validated_data.get("corrects"),
            ),
            TimelineEntrySerializer,
            context=self.get_serializer_context(),
            code=201,
        )


class MessageSerializer(serializers.ModelSerializer):
    reads_as_boilerplate = serializers.BooleanField(read_only=True)
    facts_not_translated = serializers.SerializerMethodField(
        help_text="Per variant language, the facts not yet written in it (each blocks approval)."
    )
    languages_needed = serializers.SerializerMethodField(
        help_text="The audience's languages: its default first, then its contacts' own."
    )

    @extend_schema_field(
        {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    )
    def get_facts_not_translated(self, message) -> dict:
        return comms.untranslated_facts(message)

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_languages_needed(self, message) -> list:
        # One query per audience, not per message, on a list.
        known = self.context.setdefault("_audience_languages", {})
        if message.audience_id not in known:
            known[message.audience_id] = comms.audience_languages(message.audience)
        return known[message.audience_id]

    class Meta:
        model = Message
        fields = (
            "id", "incident", "audience", "channel", "language", "template", "subject", "body",
            "translations", "dropped_languages", "languages_needed", "facts_not_translated",
            "status", "is_public", "author", "created_at", "submitted_at",
            "approver", "approved_at", "approval_note", "boilerplate_approved", "sent_at",
            "sent_by", "published_where", "corrects", "reads_as_boilerplate",
        )  # fmt: skip
        read_only_fields = fields


class DeliverySerializer(serializers.Serializer):
    contacts = serializers.IntegerField(help_text="The audience's contacts when it was sent.")
    written = serializers.IntegerField(help_text="Outbox rows written so far.")
    queued = serializers.IntegerField()
    sending = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Failed permanently (refused, 5xx).")
    retrying = serializers.IntegerField(help_text="Waiting for a retry after a transient failure.")
    cancelled = serializers.IntegerField()
    running = serializers.BooleanField()
    started_at = serializers.DateTimeField()
    written_at = serializers.DateTimeField(allow_null=True)


class MessageDetailSerializer(MessageSerializer):
    delivery = serializers.SerializerMethodField(
        help_text="A sent e-mail's progress, by state (null if it was never e-mailed)."
    )

    @extend_schema_field(DeliverySerializer(allow_null=True))
    def get_delivery(self, message) -> dict | None:
        request = self.context.get("request")
        delivery = message_delivery(user=request and request.user, message=message)
        return DeliverySerializer(delivery).data if delivery else None

    class Meta(MessageSerializer.Meta):
        fields = (*MessageSerializer.Meta.fields, "delivery")
        read_only_fields = fields


class MessageDraftSerializer(serializers.Serializer):
    incident = VisibleIncidentField()
    audience = serializers.PrimaryKeyRelatedField(queryset=StakeholderGroup.objects.all())
    channel = serializers.CharField()
    language = serializers.CharField(default="en")
    template = serializers.IntegerField(required=False, allow_null=True, default=None)
    facts = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    facts_by_language = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField(allow_blank=True)),
        required=False,
        help_text=(
            "The same facts written in other languages, {language: {fact: text}}: without "
            "them a variant's facts are marked not translated."
        ),
    )
    subject = serializers.CharField(required=False, allow_blank=True, default="")
    body = serializers.CharField(required=False, allow_blank=True, default="")


class VariantWordsSerializer(serializers.Serializer):
    subject = serializers.CharField(allow_blank=True, required=False, default="")
    body = serializers.CharField()


class MessageEditSerializer(serializers.Serializer):
    subject = serializers.CharField(allow_blank=True)
    body = serializers.CharField()
    translations = serializers.DictField(
        child=VariantWordsSerializer(),
        required=False,
        help_text=(
            "Other-language variants to change, {language: {subject, body}}; languages not "
            "named stay as they are."
        ),
    )


class MessageLanguageSerializer(serializers.Serializer):
    language = serializers.CharField(max_length=8)


class ApproveSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="")
    accept_boilerplate = serializers.BooleanField(default=False)
    approve_own = serializers.BooleanField(default=False)


class ReturnSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=comms.RETURN_COMMENT_MAX)


class PublishSerializer(serializers.Serializer):
    where = serializers.CharField()


class ScheduleSerializer(serializers.Serializer):
    at = serializers.DateTimeField()


class CorrectSerializer(serializers.Serializer):
    body = serializers.CharField()
    subject = serializers.CharField(required=False, allow_blank=True, default="")


class MessageViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """The communications timeline: draft, edit, submit, approve or return, send, publish,
    correct."""

    serializer_class = MessageSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = scoped_filterset(
        Message, ("incident", "audience", "channel", "status", "language")
    )
    search_fields = ("subject", "body")
    ordering_fields = ("created_at", "sent_at")

    def get_queryset(self):
        return messages_visible_to(self.request.user).order_by("incident", "created_at", "pk")

    def get_serializer_class(self):
        return MessageDetailSerializer if self.action == "retrieve" else MessageSerializer

    def _respond(self, call, code=200):
        return service_response(
            call, MessageSerializer, context=self.get_serializer_context(), code=code
        )

    @extend_schema(request=MessageDraftSerializer, responses={201: MessageSerializer, **ERRORS})
    def create(self, request, *args, **kwargs):
        form = MessageDraftSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        template_id = data.pop("template")
        template = None
        if template_id is not None:
            template = (
                data["incident"].playbook
                and data["incident"].playbook.templates.filter(pk=template_id).first()
            )
            if not template:
                raise serializers.ValidationError(
                    {"template": [_("Not a template of this incident's playbook.")]}
                )
        return self._respond(
            lambda: comms.message_draft(author=request.user, template=template, **data), 201
        )

    @extend_schema(request=MessageEditSerializer, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def edit(self, request, pk=None):
        """Change a draft's words; every edit is kept."""
        require(request, "incidents.change_message")
        form = MessageEditSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = self.get_object()
        return self._respond(
            lambda: comms.message_edit(message=message, editor=request.user, **form.validated_data)
        )

    def _languages(self, request, service):
        """A draft's languages changed by ``service`` (drop or add), as its editor."""
        require(request, "incidents.change_message")
        form = MessageLanguageSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = self.get_object()
        language = form.validated_data["language"]
        return self._respond(
            lambda: service(message=message, language=language, actor=request.user)
        )

    @extend_schema(request=MessageLanguageSerializer, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="drop-language", url_name="drop-language")
    def drop_language(self, request, pk=None):
        """Take a language out of a draft on purpose: its contacts get the group's default
        language (on the timeline). The main text's language and the group's default
        cannot be dropped."""
        return self._languages(request, comms.message_language_drop)

    @extend_schema(request=MessageLanguageSerializer, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="add-language", url_name="add-language")
    def add_language(self, request, pk=None):
        """Give a draft a variant in one more language: the playbook's template in it when
        there is one, else to be written."""
        return self._languages(request, comms.message_language_add)

    @extend_schema(request=None, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        require(request, "incidents.change_message")
        message = self.get_object()
        return self._respond(lambda: comms.message_submit(message=message, actor=request.user))

    @extend_schema(request=ApproveSerializer, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """One voice: needs the approval permission; never your own message, unless crisis
        manager and "approve_own": true."""
        form = ApproveSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = self.get_object()
        return self._respond(
            lambda: comms.message_approve(
                message=message, approver=request.user, **form.validated_data
            )
        )

    @extend_schema(request=ReturnSerializer, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="return", url_name="return")
    def return_to_author(self, request, pk=None):
        """Send a message in review back to its author as a draft, with a comment (required).
        Whoever may approve may return."""
        form = ReturnSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = self.get_object()
        return self._respond(
            lambda: comms.message_return(
                message=message, reviewer=request.user, comment=form.validated_data["comment"]
            )
        )

    @extend_schema(request=None, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def send(self, request, pk=None):
        """E-mail an approved message to every contact of its audience (a drill's: to the
        drill mailbox only); answers with the message, now sent."""
        require(request, "incidents.change_message")
        message = self.get_object()

        def send():
            comms.message_send(message=message, actor=request.user)
            return Message.objects.get(pk=message.pk)

        return self._respond(send)

    @extend_schema(request=PublishSerializer, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Record that an approved message was published, and where."""
        require(request, "incidents.change_message")
        form = PublishSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = self.get_object()
        return self._respond(
            lambda: comms.message_publish(
                message=message, actor=request.user, where=form.validated_data["where"]
            )
        )

    @extend_schema(request=ScheduleSerializer, responses={200: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def schedule(self, request, pk=None):
        """Send an approved e-mail message at a set time (through the timer engine)."""
        require(request, "incidents.change_message")
        form = ScheduleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = self.get_object()

        def call():
            comms.message_schedule(
                message=message, actor=request.user, at=form.validated_data["at"]
            )
            return Message.objects.get(pk=message.pk)

        return self._respond(call)

    @extend_schema(request=CorrectSerializer, responses={201: MessageSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def correct(self, request, pk=None):
        """Draft a correction of a sent or published message (the original stays)."""
        require(request, "incidents.add_message")
        form = CorrectSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = self.get_object()
        return self._respond(
            lambda: comms.message_correct(
                original=message, author=request.user, **form.validated_data
            ),
            201,
        )


class TimerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Timer
        fields = (
            "id", "incident", "kind", "due_at", "state", "round", "cycle", "level", "task",
            "audience", "message", "fired_at", "outcome",
        )  # fmt: skip
        read_only_fields = fields


class TimerViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TimerSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = scoped_filterset(Timer, ("incident", "kind", "state"))
    ordering_fields = ("due_at",)

    def get_queryset(self):
        return timers_visible_to(self.request.user).order_by("due_at", "pk")


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = (
            "id", "incident", "comms_message", "timer", "recipient", "to_email", "reason",
            "message_id", "subject", "status", "cancel_reason", "attempts", "created_at",
            "sent_at", "last_error",
        )  # fmt: skip
        read_only_fields = fields


class NotificationFilterSet(django_filters.FilterSet):
    """The outbox's filters. Incident ids are checked against the incidents the caller
    may see, so an id they may not see answers exactly like a made-up one: the same
    400 and the same message, which never repeats the id."""

    # Django's own "not one of the available choices" message, without the value.
    _unknown = {"invalid_choice": ModelChoiceField.default_error_messages["invalid_choice"]}

    incident = IdsFilter(
        queryset=_visible_for_filter,
        error_messages=_unknown,
        help_text=gettext_lazy("Incident id; repeat for several: ?incident=1&incident=2."),
    )
    incident__in = IdsFilter(
        field_name="incident",
        queryset=_visible_for_filter,
        widget=CSVWidget,
        error_messages=_unknown,
        help_text=gettext_lazy("Several incident ids, comma-separated: ?incident__in=1,2."),
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text=gettext_lazy("Written at or after this time (ISO 8601, with a time zone)."),
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        help_text=gettext_lazy("Written before this time (ISO 8601, with a time zone)."),
    )
    sent_after = django_filters.IsoDateTimeFilter(
        field_name="sent_at",
        lookup_expr="gte",
        help_text=gettext_lazy("Sent at or after this time (ISO 8601, with a time zone)."),
    )
    sent_before = django_filters.IsoDateTimeFilter(
        field_name="sent_at",
        lookup_expr="lt",
        help_text=gettext_lazy("Sent before this time (ISO 8601, with a time zone)."),
    )

    class Meta:
        model = Notification
        fields = ("incident", "reason", "status", "recipient")


@extend_schema_view(
    list=extend_schema(
        parameters=[
            # django-filter's CSV widget: one comma-separated value, not repeated keys.
            OpenApiParameter(
                "incident__in",
                {"type": "array", "items": {"type": "integer"}},
                style="form",
                explode=False,
                description=NotificationFilterSet.base_filters["incident__in"].extra["help_text"],
            )
        ]
    )
)
class NotificationViewSet(viewsets.ReadOnlyModelViewSet):
    """The outbox: one row per recipient and reason, with its delivery state."""

    serializer_class = NotificationSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = NotificationFilterSet
    search_fields = ("to_email", "subject")
    ordering_fields = ("created_at", "sent_at")

    def get_queryset(self):
        return notifications_visible_to(self.request.user).order_by("-created_at", "pk")


class NarrativeSerializer(serializers.Serializer):
    summary = serializers.CharField(required=False, allow_blank=True)
    impact = serializers.CharField(required=False, allow_blank=True)
    went_well = serializers.CharField(required=False, allow_blank=True)
    went_poorly = serializers.CharField(required=False, allow_blank=True)
    got_lucky = serializers.CharField(required=False, allow_blank=True)
    root_cause = serializers.CharField(required=False, allow_blank=True)
    lessons = serializers.CharField(required=False, allow_blank=True)


class RevisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PostMortemRevision
        fields = ("id", "postmortem", "number", "published_at", "published_by", "narrative")
        read_only_fields = fields


class PostMortemViewSet(viewsets.ReadOnlyModelViewSet):
    """Post-mortems: narrative and review state. The full report, with the facts from the
    record, is at /incidents/<reference>/postmortem/ (HTML, .md, .pdf)."""

    serializer_class = PostMortemSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = scoped_filterset(PostMortem, ("incident", "status"))
    ordering_fields = ("created_at", "published_at")

    def get_queryset(self):
        return postmortems_visible_to(self.request.user).order_by("-created_at", "pk")

    def _respond(self, call, serializer_class=PostMortemSerializer, code=200):
        return service_response(
            call, serializer_class, context=self.get_serializer_context(), code=code
        )

    @extend_schema(request=NarrativeSerializer, responses={200: PostMortemSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def edit(self, request, pk=None):
        """Change narrative sections; editing a published report starts the next revision."""
        require(request, "incidents.change_postmortem")
        form = NarrativeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        pm = self.get_object()
        return self._respond(
            lambda: postmortem.postmortem_edit(
                postmortem=pm, actor=request.user, **form.validated_data
            )
        )

    @extend_schema(request=None, responses={200: PostMortemSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        require(request, "incidents.change_postmortem")
        pm = self.get_object()
        return self._respond(
            lambda: postmortem.postmortem_submit(postmortem=pm, actor=request.user)
        )

    @extend_schema(request=None, responses={201: RevisionSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Freeze this revision (needs the publish permission)."""
        pm = self.get_object()
        return self._respond(
            lambda: postmortem.postmortem_publish(postmortem=pm, actor=request.user),
            RevisionSerializer,
            201,
        )


@extend_schema_field(OpenApiTypes.INT)
class VisiblePostMortemField(serializers.PrimaryKeyRelatedField):
    """A post-mortem of an incident the user may see; the browsable API's form offers
    only those, and any other id reads as not existing."""

    def get_queryset(self):
        return postmortems_visible_to(self.context["request"].user)


class ActionItemSerializer(serializers.ModelSerializer):
    postmortem = VisiblePostMortemField()
    is_overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = ActionItem
        fields = (
            "id", "postmortem", "title", "description", "owner", "due_on", "kind", "status",
            "playbook", "produced_version", "created_at", "done_at", "is_overdue",
        )  # fmt: skip
        read_only_fields = ("produced_version", "created_at", "done_at", "status")


class ActionItemStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ActionItem.Status.choices)


class ActionItemViewSet(
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.ReadOnlyModelViewSet,
):
    """Action items of post-mortems; one may start the playbook revision it asks for."""

    serializer_class = ActionItemSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = None  # set below: ?postmortem= only accepts visible ones
    search_fields = ("title",)
    ordering_fields = ("due_on", "created_at")

    def get_queryset(self):
        return action_items_visible_to(self.request.user).order_by("due_on", "pk")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = postmortem.action_item_create(
            postmortem=data.pop("postmortem"), actor=self.request.user, **data
        )

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        moved = data.pop("postmortem", serializer.instance.postmortem)
        if moved != serializer.instance.postmortem:
            raise serializers.ValidationError(
                {"postmortem": [_("An action item stays with its post-mortem.")]}
            )
        serializer.instance = postmortem.action_item_update(
            item=serializer.instance, actor=self.request.user, **data
        )

    @extend_schema(
        request=ActionItemStatusSerializer, responses={200: ActionItemSerializer, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def status(self, request, pk=None):
        require(request, "incidents.change_actionitem")
        form = ActionItemStatusSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        item = self.get_object()
        return service_response(
            lambda: postmortem.action_item_set_status(
                item=item, status=form.validated_data["status"]
            ),
            ActionItemSerializer,
            context=self.get_serializer_context(),
        )

    @extend_schema(request=None, responses={200: ActionItemSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def revise_playbook(self, request, pk=None):
        """Start the new draft version of the item's playbook, and link it."""
        require(request, "incidents.change_actionitem", "playbooks.add_playbook")
        item = self.get_object()
        return service_response(
            lambda: postmortem.action_item_revise_playbook(item=item, actor=request.user),
            ActionItemSerializer,
            context=self.get_serializer_context(),
        )


def _visible_postmortems(request):
    if request is None:
        return PostMortem.objects.none()
    return postmortems_visible_to(request.user)


def _action_item_filterset():
    import django_filters

    class Meta:
        model = ActionItem
        fields = ("status", "kind", "owner", "playbook", "postmortem")

    attrs = {
        "postmortem": django_filters.ModelChoiceFilter(queryset=_visible_postmortems),
        "Meta": Meta,
    }
    return type("ActionItemFilterSet", (django_filters.FilterSet,), attrs)


ActionItemViewSet.filterset_class = _action_item_filterset()


# ------------------------------------------------------------------ exercises


class ParticipantSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExerciseParticipant
        fields = ("user", "role")


class InjectSerializer(serializers.ModelSerializer):
    due_at = serializers.SerializerMethodField(
        help_text=gettext_lazy("When it is due on the wall clock (empty before the start).")
    )

    class Meta:
        model = Inject
        fields = (
            "id",
            "position",
            "offset_seconds",
            "title",
            "text",
            "roles",
            "mentions",
            "due_at",
            "fired_at",
        )

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_due_at(self, inject):
        return inject.exercise.due_at(inject)


class ExerciseSerializer(serializers.ModelSerializer):
    incident = serializers.SlugRelatedField(slug_field="reference", read_only=True)
    elapsed_seconds = serializers.SerializerMethodField(
        help_text=gettext_lazy("Exercise time since the start, pauses left out.")
    )
    participants = ParticipantSerializer(many=True, read_only=True)
    injects = InjectSerializer(many=True, read_only=True)

    class Meta:
        model = Exercise
        fields = (
            "id", "title", "playbook", "brief", "planned_start", "status", "facilitator",
            "incident", "started_at", "paused_at", "paused_seconds", "ended_at",
            "elapsed_seconds", "observations", "counts_as_review", "participants", "injects",
        )  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_elapsed_seconds(self, exercise) -> int:
        return int(exercise.elapsed().total_seconds())


class ParticipantInputSerializer(serializers.Serializer):
    user = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.filter(is_active=True)
    )
    role = serializers.PrimaryKeyRelatedField(queryset=CrisisRole.objects.all())


class InjectInputSerializer(serializers.Serializer):
    offset_seconds = serializers.IntegerField(min_value=0, max_value=MAX_INJECT_OFFSET_SECONDS)
    title = serializers.CharField(max_length=200)
    text = serializers.CharField(max_length=INJECT_TEXT_MAX)
    roles = serializers.PrimaryKeyRelatedField(
        queryset=CrisisRole.objects.all(), many=True, required=False
    )
    mentions = serializers.JSONField(
        required=False,
        help_text=gettext_lazy(
            "Sample public comments it brings into the listening inbox when it fires: "
            "[{channel, author, text, language, sentiment}] (checked by the plan)."
        ),
    )


class ExercisePlanSerializer(serializers.Serializer):
    playbook = serializers.PrimaryKeyRelatedField(
        queryset=Playbook.objects.filter(status=Playbook.Status.PUBLISHED)
    )
    title = serializers.CharField(max_length=300)
    brief = serializers.CharField(max_length=EXERCISE_BRIEF_MAX, required=False, allow_blank=True)
    planned_start = serializers.DateTimeField(required=False, allow_null=True)
    participants = ParticipantInputSerializer(many=True, max_length=EXERCISE_MAX_PARTICIPANTS)
    injects = InjectInputSerializer(
        many=True,
        required=False,
        max_length=MAX_INJECTS,
        help_text=gettext_lazy("Left out: the starter library's injects for the playbook."),
    )


class ExerciseEndSerializer(serializers.Serializer):
    observations = serializers.CharField(
        max_length=EXERCISE_BRIEF_MAX, required=False, allow_blank=True
    )
    counts_as_review = serializers.BooleanField(required=False, default=False)


class InjectFireSerializer(serializers.Serializer):
    inject = serializers.IntegerField(min_value=1, help_text=gettext_lazy("The inject's id."))


class ExerciseViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Exercises: plan one from a playbook, start, pause, resume, fire an inject early, end.

    Crisis managers see every exercise, the facilitator and participants theirs; running
    one is for its facilitator or a crisis manager.
    """

    serializer_class = ExerciseSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("status", "playbook")
    ordering_fields = ("created_at", "started_at")
    ordering = ("-created_at",)

    def get_queryset(self):
        return (
            exercises_visible_to(self.request.user)
            .prefetch_related("participants", "injects__roles", "injects__exercise")
            .order_by("-created_at", "pk")
        )

    @extend_schema(request=ExercisePlanSerializer, responses={201: ExerciseSerializer, **ERRORS})
    def create(self, request, *args, **kwargs):
        form = ExercisePlanSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        injects = None
        if "injects" in data:
            injects = [
                exercises.InjectDraft(
                    offset_seconds=i["offset_seconds"],
                    title=i["title"],
                    text=i["text"],
                    roles=i.get("roles", []),
                    mentions=i.get("mentions", []),
                )
                for i in data["injects"]
            ]
        return service_response(
            lambda: exercises.exercise_plan(
                playbook=data["playbook"],
                title=data["title"],
                brief=data.get("brief", ""),
                planned_start=data.get("planned_start"),
                facilitator=request.user,
                participants=[(p["user"], p["role"]) for p in data["participants"]],
                injects=injects,
            ),
            ExerciseSerializer,
            context=self.get_serializer_context(),
            code=status.HTTP_201_CREATED,
        )

    def _runner(self, request) -> Exercise:
        exercise = self.get_object()
        if not exercise_may_run(request.user, exercise):
            raise PermissionDenied(_("Only its facilitator or a crisis manager runs an exercise."))
        return exercise

    def _act(self, request, call):
        exercise = self._runner(request)
        return service_response(
            lambda: call(exercise) and Exercise.objects.get(pk=exercise.pk),
            ExerciseSerializer,
            context=self.get_serializer_context(),
        )

    @extend_schema(request=None, responses={200: ExerciseSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Open the drill incident, call the participants in, and start the injects' clock."""
        return self._act(
            request, lambda e: exercises.exercise_start(exercise=e, actor=request.user)
        )

    @extend_schema(request=None, responses={200: ExerciseSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(
            request, lambda e: exercises.exercise_pause(exercise=e, actor=request.user)
        )

    @extend_schema(request=None, responses={200: ExerciseSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(
            request, lambda e: exercises.exercise_resume(exercise=e, actor=request.user)
        )

    @extend_schema(request=ExerciseEndSerializer, responses={200: ExerciseSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def end(self, request, pk=None):
        form = ExerciseEndSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._act(
            request,
            lambda e: exercises.exercise_end(exercise=e, actor=request.user, **form.validated_data),
        )

    @extend_schema(request=InjectFireSerializer, responses={200: ExerciseSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def fire(self, request, pk=None):
        """Fire an inject now, before its time (once: a second call changes nothing)."""
        form = InjectFireSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        exercise = self._runner(request)
        inject = Inject.objects.filter(exercise=exercise, pk=form.validated_data["inject"]).first()
        if inject is None:
            raise serializers.ValidationError({"inject": [_("No such inject in this exercise.")]})
        # Not inside service_response: the fire delivers its e-mails after its own commit.
        exercises.exercise_fire_early(exercise=exercise, inject=inject, actor=request.user)
        exercise = self.get_queryset().get(pk=exercise.pk)
        return Response(self.get_serializer(exercise).data)


# ------------------------------------------------------------------ status-page subscriptions


class SubscriptionSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="contact.email", read_only=True)
    language = serializers.CharField(source="contact.language", read_only=True)
    incident_reference = serializers.CharField(
        source="incident.reference", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Subscription
        fields = ("id", "email", "language", "incident", "incident_reference", "confirmed_at")
        read_only_fields = fields


class SubscriptionCountSerializer(serializers.Serializer):
    incident = serializers.IntegerField(
        allow_null=True, help_text=gettext_lazy("Empty: every update.")
    )
    incident_reference = serializers.CharField(allow_null=True)
    subscribers = serializers.IntegerField()


class SubscriptionViewSet(mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Status-page subscriptions (crisis managers): who asked for which updates; delete
    to unsubscribe someone (their address goes with their last subscription)."""

    serializer_class = SubscriptionSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_class = scoped_filterset(Subscription, ("incident",))
    ordering_fields = ("confirmed_at",)

    def get_queryset(self):
        return subscriptions_visible_to(self.request.user).order_by("-confirmed_at", "pk")

    def perform_destroy(self, instance):
        subscribers.subscription_delete(subscription=instance)

    @extend_schema(
        responses={200: SubscriptionCountSerializer(many=True), **ERRORS},
        filters=False,
        parameters=[],
    )
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def counts(self, request):
        """How many subscribers each scope has: every update (incident empty) and each
        incident you may see."""
        rows = (
            self.get_queryset()
            .order_by()
            .values("incident", "incident__reference")
            .annotate(subscribers=Count("pk"))
            .order_by("incident__reference")
        )
        data = [
            {
                "incident": row["incident"],
                "incident_reference": row["incident__reference"],
                "subscribers": row["subscribers"],
            }
            for row in rows
        ]
        return Response(SubscriptionCountSerializer(data, many=True).data)
