"""The public status page's addresses (incidents/statuspage.py), mounted at /status/."""

from django.urls import path

from incidents import status_subscribe, statuspage

app_name = "status"
urlpatterns = [
    path("", statuspage.status_index, name="index"),
    path("feed.atom", statuspage.status_feed, name="feed"),
    path("subscribe/", status_subscribe.subscribe, name="subscribe"),
    path("subscribe/<str:token>/", status_subscribe.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", status_subscribe.unsubscribe, name="unsubscribe"),
    path("<str:reference>/", statuspage.status_incident, name="incident"),
    path("<str:reference>/feed.atom", statuspage.incident_feed, name="incident_feed"),
]
