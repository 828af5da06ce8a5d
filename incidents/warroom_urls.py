"""The war room's addresses (incidents/warroom.py), mounted at the site's root."""

from django.urls import path

from incidents import warroom, warroom_comms, warroom_exercises

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
    # Exercises (incidents/warroom_exercises.py).
    path("exercises/", warroom_exercises.exercise_list, name="exercises"),
    path("exercises/new/", warroom_exercises.exercise_new, name="exercise_new"),
    path("exercises/<int:pk>/", warroom_exercises.exercise_page, name="exercise"),
    path("exercises/<int:pk>/edit/", warroom_exercises.exercise_edit, name="exercise_edit"),
    path(
        "exercises/<int:pk>/do/<slug:action>/",
        warroom_exercises.exercise_action,
        name="exercise_action",
    ),
    path(
        "exercises/<int:pk>/injects/<int:inject_id>/fire/",
        warroom_exercises.inject_fire,
        name="inject_fire",
    ),
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
