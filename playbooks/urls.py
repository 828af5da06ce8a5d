from django.urls import path

from playbooks import views

app_name = "playbooks"
urlpatterns = [
    path("oncall/<int:pk>/<str:token>.ics", views.rotation_ical, name="rotation-ical"),
]
