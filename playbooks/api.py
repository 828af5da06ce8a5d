"""REST API for preparedness: risks, roles, rotations, stakeholders and playbooks."""

from __future__ import annotations

from dataclasses import asdict

import django_filters
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.fields import ProhibitNullCharactersValidator
from rest_framework.response import Response

from crisisdesk.api import FILTERS, ModelPermissions, require, service_response
from playbooks import oncall, services
from playbooks.models import (
    MAX_RISK_REVIEW_DAYS,
    Channel,
    CrisisRole,
    EscalationLevel,
    MessageTemplate,
    OnCallRotation,
    Playbook,
    PlaybookStep,
    RotationMember,
    RotationOverride,
    Stakeholder,
    StakeholderGroup,
    SurfaceChannel,
    UpdateCadence,
)
from playbooks.models import Risk as RiskModel
from playbooks.playbook_io import (
    PlaybookImportError,
    playbooks_export_yaml,
    playbooks_import_yaml,
)
from playbooks.stakeholder_import import (
    CsvImportError,
    stakeholders_export_csv,
    stakeholders_import_csv,
)


class ModelCleanMixin:
    """Run the model's own validation, so the API refuses what the admin refuses."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        model = self.Meta.model
        many = {f.name for f in model._meta.many_to_many}
        plain = {k: v for k, v in attrs.items() if k not in many}
        if self.instance is None:
            instance = model(**{**self._current(), **plain})
        else:
            instance = model.objects.get(pk=self.instance.pk)
            for key, value in plain.items():
                setattr(instance, key, value)
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
    # The model's definition: a closed risk is never overdue.
    review_overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = RiskModel
        fields = (
            "id", "title", "category", "description", "likelihood", "impact", "velocity",
            "channels", "owner", "mitigations", "status", "playbook", "next_review_on",
            "score", "review_overdue", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")


class ReviewedSerializer(serializers.Serializer):
    next_review_in_days = serializers.IntegerField(
        min_value=1, max_value=MAX_RISK_REVIEW_DAYS, default=90
    )


class RiskViewSet(viewsets.ModelViewSet):
    """The risk register. Score = likelihood × impact."""

    queryset = RiskModel.objects.select_related("owner", "playbook").order_by("pk")
    serializer_class = RiskSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("category", "status", "likelihood", "impact", "owner", "playbook")
    search_fields = ("title", "description", "mitigations")
    ordering_fields = ("title", "likelihood", "impact", "velocity", "next_review_on", "created_at")

    @extend_schema(request=ReviewedSerializer, responses={200: RiskSerializer})
    @action(detail=True, methods=["post"])
    def reviewed(self, request, pk=None):
        """Record a review: the next one falls due in the given number of days."""
        require(request, "playbooks.change_risk")
        form = ReviewedSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        risk = self.get_object()
        return service_response(
            lambda: services.risk_mark_reviewed(risk=risk, **form.validated_data),
            RiskSerializer,
            context=self.get_serializer_context(),
        )


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


class OnCallRotationViewSet(viewsets.ModelViewSet):
    """On-call rotations; `now` says who holds each role right now. Members and
    overrides are their own endpoints."""

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


class RotationMemberFullSerializer(serializers.ModelSerializer):
    class Meta:
        model = RotationMember
        fields = ("id", "rotation", "user", "position")


class RotationMemberViewSet(viewsets.ModelViewSet):
    queryset = RotationMember.objects.order_by("rotation", "position", "pk")
    serializer_class = RotationMemberFullSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("rotation", "user")
    ordering_fields = ("position",)


class RotationOverrideSerializer(serializers.ModelSerializer):
    class Meta:
        model = RotationOverride
        fields = ("id", "rotation", "user", "starts_at", "ends_at", "reason", "created_at")
        read_only_fields = ("created_at",)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        starts = attrs.get("starts_at", getattr(self.instance, "starts_at", None))
        ends = attrs.get("ends_at", getattr(self.instance, "ends_at", None))
        if starts and ends and ends <= starts:
            raise serializers.ValidationError({"ends_at": [_("Must be after the start.")]})
        return attrs


class RotationOverrideViewSet(viewsets.ModelViewSet):
    """Someone stands in for a time range (holiday, sick day); it wins over the rotation."""

    queryset = RotationOverride.objects.order_by("rotation", "starts_at", "pk")
    serializer_class = RotationOverrideSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("rotation", "user")
    ordering_fields = ("starts_at", "ends_at")


class StakeholderGroupSerializer(serializers.ModelSerializer):
    preferred_channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False
    )

    class Meta:
        model = StakeholderGroup
        fields = (
            "id", "slug", "name", "kind", "priority", "preferred_channels",
            "default_language", "description", "public",
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


class RawTextField(serializers.CharField):
    """A document for an import, passed on as sent: the import reports a NUL or a
    control character with its line or row, and trimming would shift the lines."""

    def __init__(self, **kwargs) -> None:
        super().__init__(trim_whitespace=False, **kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class CsvImportSerializer(serializers.Serializer):
    csv = RawTextField(
        help_text=gettext_lazy(
            "The CSV text (name, organisation, email, ...), at most 2,000,000 bytes, each "
            "cell at most 10,000 characters. A UTF-8 BOM is accepted; one leading ' before "
            "= + - @ (as the export writes) is taken off."
        )
    )
    group = serializers.PrimaryKeyRelatedField(
        queryset=StakeholderGroup.objects.all(),
        required=False,
        allow_null=True,
        help_text=gettext_lazy("Group for rows that name none."),
    )


class CsvImportReportSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    duplicates_in_file = serializers.IntegerField()


class StakeholderViewSet(viewsets.ModelViewSet):
    """Contacts of the stakeholder groups; import and export them as CSV."""

    queryset = Stakeholder.objects.select_related("group").order_by("pk")
    serializer_class = StakeholderSerializer
    permission_classes = [ModelPermissions]
    filter_backends = FILTERS
    filterset_fields = ("group", "language")
    search_fields = ("name", "organisation", "email")
    ordering_fields = ("name", "created_at")

    @extend_schema(
        request=CsvImportSerializer,
        responses={
            201: CsvImportReportSerializer,
            400: OpenApiResponse(description="Every bad row and field; nothing written"),
        },
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_csv(self, request):
        """Import contacts: every row checked first; one bad row and nothing is written."""
        require(request, "playbooks.add_stakeholder", "playbooks.change_stakeholder")
        form = CsvImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            report = stakeholders_import_csv(
                text=form.validated_data["csv"], default_group=form.validated_data.get("group")
            )
        except CsvImportError as exc:
            return Response(
                {"rows": [
                    {"row": e.row, "field": e.field, "message": str(e.message)} for e in exc.errors
                ]},
                status=400,
            )  # fmt: skip
        return Response(asdict(report), status=201)

    @extend_schema(
        parameters=[OpenApiParameter("group", OpenApiTypes.INT, description="only this group")],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    @action(detail=False, methods=["get"], url_path="export", pagination_class=None)
    def export_csv(self, request):
        groups = StakeholderGroup.objects.all()
        group = request.query_params.get("group")
        if group:
            if not group.isdigit():
                raise serializers.ValidationError({"group": [_("A group id.")]})
            groups = groups.filter(pk=int(group))
        response = HttpResponse(
            stakeholders_export_csv(groups=groups), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="contacts.csv"'
        return response


class DraftContentMixin:
    """Steps, templates, levels and cadences change only on a draft version: the
    services decide (playbook_content_save / playbook_content_delete), as in the admin."""

    def _save(self, serializer, instance):
        data = dict(serializer.validated_data)
        users = data.pop("users", None)
        for name, value in data.items():
            setattr(instance, name, value)
        serializer.instance = services.playbook_content_save(instance=instance, users=users)

    def perform_create(self, serializer):
        self._save(serializer, serializer.Meta.model())

    def perform_update(self, serializer):
        self._save(serializer, serializer.Meta.model.objects.get(pk=serializer.instance.pk))

    def perform_destroy(self, instance):
        services.playbook_content_delete(instance=instance)


class StepFullSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlaybookStep
        fields = (
            "id", "playbook", "position", "phase", "title", "instructions", "role",
            "due_offset_minutes",
        )  # fmt: skip


class TemplateFullSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageTemplate
        fields = ("id", "playbook", "name", "audience", "channel", "language", "subject", "body")


class LevelFullSerializer(serializers.ModelSerializer):
    class Meta:
        model = EscalationLevel
        fields = (
            "id",
            "playbook",
            "position",
            "delay_seconds",
            "target",
            "role",
            "rotation",
            "users",
        )
        # Numbering (1..n, no repeat) is the service's rule, answered on "position".
        validators = []


class CadenceFullSerializer(serializers.ModelSerializer):
    class Meta:
        model = UpdateCadence
        fields = ("id", "playbook", "audience", "every_minutes")


def _content_viewset(model, serializer, ordering, doc):
    attrs = {
        "__doc__": doc,
        "queryset": model.objects.order_by(*ordering),
        "serializer_class": serializer,
        "permission_classes": [ModelPermissions],
        "filter_backends": FILTERS,
        "filterset_fields": ("playbook",),
        "ordering_fields": ordering[1:],
    }
    return type(f"{model.__name__}ViewSet", (DraftContentMixin, viewsets.ModelViewSet), attrs)


StepViewSet = _content_viewset(
    PlaybookStep, StepFullSerializer, ("playbook", "position", "pk"), "Steps of draft playbooks."
)
TemplateViewSet = _content_viewset(
    MessageTemplate,
    TemplateFullSerializer,
    ("playbook", "name", "pk"),
    "Message templates of draft playbooks ({placeholders} filled from the incident).",
)
EscalationLevelViewSet = _content_viewset(
    EscalationLevel,
    LevelFullSerializer,
    ("playbook", "position", "pk"),
    "Escalation levels of draft playbooks: whom to page, how long after the previous level.",
)
CadenceViewSet = _content_viewset(
    UpdateCadence,
    CadenceFullSerializer,
    ("playbook", "every_minutes", "pk"),
    "How often each audience hears from us, per draft playbook.",
)


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
            "first_statement_minutes", "escalation_repeat_count", "page_at_once_max_severity",
            "roll_call_minutes", "reply_minutes", "reply_warn_minutes", "reply_deadlines",
            "published_at",
            "created_at", "steps", "templates", "escalation_levels", "cadences",
        )  # fmt: skip
        read_only_fields = ("version", "status", "published_at", "created_at")
        validators = []  # a new key is checked in the view, with a message that says what to do


class YamlImportSerializer(serializers.Serializer):
    yaml = RawTextField(
        help_text=gettext_lazy(
            "A crisisdesk-playbooks/1 document: at most 1,000,000 bytes, lists and mappings "
            "nested at most 20 deep, no anchors or aliases."
        )
    )


class YamlImportResultSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.IntegerField())
    unchanged = serializers.ListField(child=serializers.IntegerField())
    roles_created = serializers.IntegerField()
    groups_created = serializers.IntegerField()


class PlaybookViewSet(DraftContentMixin, viewsets.ModelViewSet):
    """Versioned playbooks with steps, templates, escalation policy and cadences.

    POST makes version 1 of a new key, as a draft; a draft's fields, steps,
    templates, levels and cadences can change (their own endpoints), a published
    or retired version never. `new_version` copies a version into a draft,
    `publish` publishes it; `import` and `export` speak YAML.
    """

    def perform_create(self, serializer):
        serializer.instance = services.playbook_create(data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.playbook_update(
            playbook=serializer.instance, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.playbook_delete(playbook=instance)

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
        request=YamlImportSerializer,
        responses={
            201: YamlImportResultSerializer,
            400: OpenApiResponse(description="Every error, with its line; nothing written"),
        },
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_yaml(self, request):
        """Import playbooks as YAML (format crisisdesk-playbooks/1); a bad file is refused whole."""
        require(request, "playbooks.add_playbook")
        form = YamlImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            result = playbooks_import_yaml(text=form.validated_data["yaml"], actor=request.user)
        except PlaybookImportError as exc:
            return Response({"errors": [str(e) for e in exc.errors]}, status=400)
        return Response(
            {
                "created": [p.pk for p in result.created],
                "unchanged": [p.pk for p in result.unchanged],
                "roles_created": result.roles_created,
                "groups_created": result.groups_created,
            },
            status=201,
        )

    @extend_schema(
        parameters=[OpenApiParameter("key", OpenApiTypes.STR, description="only this playbook")],
        # A YAML document (format crisisdesk-playbooks/1): a mapping once parsed.
        responses={(200, "application/yaml"): OpenApiTypes.OBJECT},
    )
    @action(detail=False, methods=["get"], url_path="export", pagination_class=None)
    def export_yaml(self, request):
        """The published version of every playbook (or of one, ?key=), as YAML."""
        qs = Playbook.objects.filter(status=Playbook.Status.PUBLISHED).order_by("key", "version")
        key = request.query_params.get("key")
        if key:
            qs = qs.filter(key=key)
            if not qs.exists():
                raise NotFound(_("No published playbook with that key."))
        text = playbooks_export_yaml(playbooks=qs)
        response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="playbooks.yaml"'
        return response

    @extend_schema(request=None, responses={200: PlaybookSerializer})
    @action(detail=True, methods=["post"])
    def reviewed(self, request, pk=None):
        """Record that this version was reviewed today (its content does not change)."""
        require(request, "playbooks.change_playbook")
        playbook = self.get_object()
        return service_response(
            lambda: services.playbook_mark_reviewed(playbook=playbook),
            PlaybookSerializer,
            context=self.get_serializer_context(),
        )

    @extend_schema(request=None, responses={200: PlaybookSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        """Retire a version: no new incident runs it; running ones keep it."""
        require(request, "playbooks.change_playbook")
        playbook = self.get_object()
        return service_response(
            lambda: services.playbook_retire(playbook=playbook),
            PlaybookSerializer,
            context=self.get_serializer_context(),
        )

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
        description=services.PUBLISH_RULES,
        request=None,
        responses={
            200: PlaybookSerializer,
            400: OpenApiResponse(
                description="Not publishable: messages keyed steps, escalation_levels, templates"
            ),
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


User = get_user_model()


class UserSerializer(serializers.ModelSerializer):
    full_name = serializers.CharField(source="get_full_name", read_only=True)
    crisis_roles = serializers.SlugRelatedField(many=True, read_only=True, slug_field="slug")
    groups = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = User
        fields = ("id", "username", "full_name", "email", "crisis_roles", "groups")


class CanListUsers(permissions.BasePermission):
    """People who may see accounts (auth.view_user) or who build escalation levels,
    which name users by id (playbooks.change_escalationlevel: crisis managers)."""

    message = gettext_lazy(
        "You need auth.view_user or playbooks.change_escalationlevel to list users."
    )

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and (
                user.has_perm("auth.view_user") or user.has_perm("playbooks.change_escalationlevel")
            )
        )


class UserFilter(django_filters.FilterSet):
    crisis_roles = django_filters.CharFilter(
        field_name="crisis_roles__slug", label=gettext_lazy("role slug")
    )
    groups = django_filters.CharFilter(field_name="groups__name", label=gettext_lazy("group name"))

    class Meta:
        model = User
        fields = ("crisis_roles", "groups")


class UserViewSet(viewsets.ReadOnlyModelViewSet):
    """Active users, with the crisis roles they hold and their groups: the ids that
    escalation levels and rotations take."""

    queryset = (
        User.objects.filter(is_active=True)
        .prefetch_related("crisis_roles", "groups")
        .order_by("username", "pk")
    )
    serializer_class = UserSerializer
    permission_classes = [CanListUsers]
    filter_backends = FILTERS
    filterset_class = UserFilter
    search_fields = ("username", "first_name", "last_name", "email")
    ordering_fields = ("username", "last_name", "email")
