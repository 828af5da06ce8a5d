from django.urls import path

from incidents import views

app_name = "incidents"
urlpatterns = [
    path("ack/<str:token>/", views.acknowledge_link, name="ack"),
    path("<str:reference>/communications/", views.communications, name="communications"),
]
