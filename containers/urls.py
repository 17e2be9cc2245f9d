from django.urls import path

from containers import views

app_name = "containers"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("healthz", views.healthz, name="healthz"),
]
