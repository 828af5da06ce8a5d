"""REST API for preparedness: risks, roles, rotations, stakeholders and playbooks."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from crisisdesk.api import FILTERS, ModelPermissions, require, service_response
from playbooks import oncall, services
from playbooks.models import (
    Channel,
    CrisisRole,
    EscalationLevel,
    MessageTemplate,
    OnCallRotation,
    Playbook,
    PlaybookStep,
    RotationMember,
    Stakeholder,
    StakeholderGroup,
    SurfaceChannel,
    UpdateCadence,
)
from playbooks.models import Risk as RiskModel


class ModelCleanMixin:
    """Run the model's own validation, so the API refuses what the admin refuses."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        model = self.Meta.model
        instance = model(**{**self._current(), **attrs}) if self.instance is None else None
        if self.instance is not None:
            instance = self.instance
            for key, value in attrs.items():
                setattr(instance, key, value)
        from django.core.exceptions import ValidationError

        try:
            instance.clean()
        except ValidationError as exc:
            raise serializers.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            ) from exc
        return attrs

    def _current(self) -> dict:
        return {}


class RiskSerializer(ModelCleanMixin, serializers.ModelSerializer):
    score = serializers.IntegerField(read_only=True)
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=SurfaceChannel.choices), required=False
    )
    review_overdue = serializers.SerializerMethodField()

    class Meta:
        model = RiskModel
        fields = (
            "id", "title", "category", "description", "likelihood", "impact", "velocity",
            "channels", "owner", "mitigations", "status", "playbook", "next_review_on",
            "score", "review_overdue", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")

    def get_review_overdue(self, obj) -> bool:
        return bool(obj.next_review_on and obj.next_review_on < timezone.localdate())


class RiskViewSet(viewsets.ModelViewSet):
    """The risk register. Score = likelihood × impact."""

    queryset = RiskModel.objects.select_related("owner", "playbook").order_by("pk")
    serializer_class = RiskSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("category", "status", "likelihood", "impact", "owner", "playbook")
    search_fields = ("title", "description", "mitigations")
    ordering_fields = ("title", "likelihood", "impact", "velocity", "next_review_on", "created_at")


class CrisisRoleSerializer(serializers.ModelSerializer):
    class Meta:
        model = CrisisRole
        fields = (
            "id", "slug", "name", "responsibilities", "sort_order", "can_approve_messages",
            "holders",
        )  # fmt: skip


class CrisisRoleViewSet(viewsets.ModelViewSet):
    queryset = CrisisRole.objects.prefetch_related("holders").order_by("sort_order", "pk")
    serializer_class = CrisisRoleSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("slug", "can_approve_messages")
    search_fields = ("name", "slug", "responsibilities")
    ordering_fields = ("sort_order", "name")


class RotationMemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = RotationMember
        fields = ("user", "position")


class OnCallRotationSerializer(serializers.ModelSerializer):
    members = RotationMemberSerializer(many=True, read_only=True)

    class Meta:
        model = OnCallRotation
        fields = (
            "id", "name", "role", "priority", "starts_at", "handoff_hours", "timezone",
            "is_active", "members",
        )  # fmt: skip


class OnCallNowSerializer(serializers.Serializer):
    role = serializers.CharField()
    user = serializers.IntegerField(allow_null=True)
    name = serializers.CharField(allow_null=True)


class OnCallRotationViewSet(viewsets.ReadOnlyModelViewSet):
    """On-call rotations (edited in the admin); `now` says who holds each role right now."""

    queryset = OnCallRotation.objects.select_related("role").prefetch_related("members")
    queryset = queryset.order_by("role__sort_order", "pk")
    serializer_class = OnCallRotationSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("role", "is_active")
    search_fields = ("name",)
    ordering_fields = ("name", "priority", "starts_at")

    @extend_schema(responses=OnCallNowSerializer(many=True))
    @action(detail=False, methods=["get"], pagination_class=None)
    def now(self, request):
        rows = [
            {
                "role": role.slug,
                "user": user.pk if user else None,
                "name": (user.get_full_name() or user.get_username()) if user else None,
            }
            for role, user in oncall.oncall_now()
        ]
        return Response(OnCallNowSerializer(rows, many=True).data)


class StakeholderGroupSerializer(serializers.ModelSerializer):
    preferred_channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False
    )

    class Meta:
        model = StakeholderGroup
        fields = (
            "id", "slug", "name", "kind", "priority", "preferred_channels",
            "default_language", "description",
        )  # fmt: skip


class StakeholderGroupViewSet(viewsets.ModelViewSet):
    queryset = StakeholderGroup.objects.order_by("priority", "pk")
    serializer_class = StakeholderGroupSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("kind", "default_language")
    search_fields = ("name", "slug")
    ordering_fields = ("priority", "name")


class StakeholderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stakeholder
        fields = (
            "id", "group", "name", "organisation", "email", "phone", "language", "notes",
            "created_at",
        )  # fmt: skip
        read_only_fields = ("created_at",)


class StakeholderViewSet(viewsets.ModelViewSet):
    """Contacts of the stakeholder groups (CSV import: `manage.py import_stakeholders`)."""

    queryset = Stakeholder.objects.select_related("group").order_by("pk")
    serializer_class = StakeholderSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("group", "language")
    search_fields = ("name", "organisation", "email")
    ordering_fields = ("name", "created_at")


class StepSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlaybookStep
        fields = ("position", "phase", "title", "instructions", "role", "due_offset_minutes")


class TemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageTemplate
        fields = ("id", "name", "audience", "channel", "language", "subject", "body")


class LevelSerializer(serializers.ModelSerializer):
    class Meta:
        model = EscalationLevel
        fields = ("position", "delay_seconds", "target", "role", "rotation", "users")


class CadenceSerializer(serializers.ModelSerializer):
    class Meta:
        model = UpdateCadence
        fields = ("audience", "every_minutes")


class PlaybookSerializer(serializers.ModelSerializer):
    steps = StepSerializer(many=True, read_only=True)
    templates = TemplateSerializer(many=True, read_only=True)
    escalation_levels = LevelSerializer(many=True, read_only=True)
    cadences = CadenceSerializer(many=True, read_only=True)

    class Meta:
        model = Playbook
        fields = (
            "id", "key", "version", "title", "scenario", "summary", "severity_guidance",
            "status", "owner", "review_cycle_days", "last_reviewed_on",
            "first_statement_minutes", "escalation_repeat_count", "published_at",
            "created_at", "steps", "templates", "escalation_levels", "cadences",
        )  # fmt: skip
        read_only_fields = ("version", "status", "published_at", "created_at")


class PlaybookViewSet(viewsets.ReadOnlyModelViewSet):
    """Versioned playbooks with steps, templates, escalation policy and cadences.

    Content is edited in the admin or imported as YAML; here a version is copied
    into a new draft and published.
    """

    queryset = (
        Playbook.objects.select_related("owner")
        .prefetch_related("steps", "templates", "escalation_levels__users", "cadences")
        .order_by("key", "-version")
    )
    serializer_class = PlaybookSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("key", "status", "scenario")
    search_fields = ("title", "key", "summary")
    ordering_fields = ("key", "version", "created_at")

    @extend_schema(
        request=None,
        responses={201: PlaybookSerializer, 403: OpenApiResponse(description="No permission")},
    )
    @action(detail=True, methods=["post"])
    def new_version(self, request, pk=None):
        """Copy this version into a new draft (or return the draft that exists)."""
        require(request, "playbooks.add_playbook")
        playbook = self.get_object()
        return service_response(
            lambda: services.playbook_new_version(playbook=playbook, actor=request.user),
            PlaybookSerializer,
            context=self.get_serializer_context(),
            code=201,
        )

    @extend_schema(
        request=None,
        responses={
            200: PlaybookSerializer,
            400: OpenApiResponse(description="Not publishable"),
            403: OpenApiResponse(description="No permission"),
        },
    )
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Publish a draft; the version published before is retired, untouched."""
        require(request, "playbooks.change_playbook")
        playbook = self.get_object()
        return service_response(
            lambda: services.playbook_publish(playbook=playbook, actor=request.user),
            PlaybookSerializer,
            context=self.get_serializer_context(),
        )
