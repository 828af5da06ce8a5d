"""The war room's addresses (incidents/warroom.py), mounted at the site's root."""

from django.urls import path

from incidents import warroom, warroom_comms

app_name = "warroom"
urlpatterns = [
    path("", warroom.dashboard, name="dashboard"),
    path("incidents/", warroom.incident_list, name="incidents"),
    path("incidents/new/", warroom.incident_new, name="incident_new"),
    path("incidents/<str:reference>/", warroom.incident_page, name="incident"),
    path("incidents/<str:reference>/timeline/", warroom.timeline_partial, name="timeline"),
    path("incidents/<str:reference>/notes/", warroom.note_add, name="note_add"),
    path("incidents/<str:reference>/roles/", warroom.role_assign, name="role_assign"),
    path(
        "incidents/<str:reference>/roles/<int:assignment_id>/relieve/",
        warroom.role_relieve,
        name="role_relieve",
    ),
    path(
        "incidents/<str:reference>/roles/<int:assignment_id>/answer/",
        warroom.role_answer,
        name="role_answer",
    ),
    path(
        "incidents/<str:reference>/tasks/<int:task_id>/",
        warroom.task_complete,
        name="task_complete",
    ),
    path("incidents/<str:reference>/do/<slug:action>/", warroom.incident_action, name="action"),
    # Communications (incidents/warroom_comms.py).
    path(
        "incidents/<str:reference>/messages/new/",
        warroom_comms.message_new,
        name="message_new",
    ),
    path(
        "incidents/<str:reference>/messages/<int:message_id>/",
        warroom_comms.message_page,
        name="message",
    ),
    path(
        "incidents/<str:reference>/messages/<int:message_id>/do/<slug:action>/",
        warroom_comms.message_action,
        name="message_action",
    ),
]
