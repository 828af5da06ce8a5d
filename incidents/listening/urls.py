from django.urls import path

from incidents.listening import views

app_name = "listening"
urlpatterns = [
    path("", views.mentions, name="mentions"),
    path("<int:mention_id>/", views.mention_page, name="mention"),
    path("<int:mention_id>/do/<slug:action>/", views.mention_action, name="mention_action"),
]
