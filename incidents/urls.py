from django.urls import path

from incidents import views

app_name = "incidents"
urlpatterns = [
    path("ack/<str:token>/", views.acknowledge_link, name="ack"),
    path("rollcall/<str:token>/", views.rollcall_link, name="rollcall"),
    path("trends/", views.trends, name="trends"),
    path("<str:reference>/communications/", views.communications, name="communications"),
    path("<str:reference>/postmortem/", views.postmortem_page, name="postmortem"),
    path("<str:reference>/postmortem/start/", views.postmortem_start, name="postmortem_start"),
    path("<str:reference>/postmortem.md", views.postmortem_markdown, name="postmortem_markdown"),
    path("<str:reference>/postmortem.pdf", views.postmortem_pdf, name="postmortem_pdf"),
    path(
        "<str:reference>/postmortem/revisions/<int:number>/",
        views.postmortem_revision,
        name="postmortem_revision",
    ),
]
