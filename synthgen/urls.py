from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from apps.datasets.api import DatasetViewSet
from apps.generation.api import GenerateView, JobViewSet
from apps.generators.api import GeneratorTypeViewSet, GeneratorViewSet, RunViewSet

router = DefaultRouter()
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("generators", GeneratorViewSet, basename="generator")
router.register("runs", RunViewSet, basename="run")
router.register("generator-types", GeneratorTypeViewSet, basename="generator-type")
router.register("jobs", JobViewSet, basename="job")

api_patterns = [
    path("auth/token/", obtain_auth_token, name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("generators/<int:pk>/generate/", GenerateView.as_view(), name="generator-generate"),
    *router.urls,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include((api_patterns, "api"))),
    path("", include("apps.core.urls")),
    path("datasets/", include("apps.datasets.urls")),
    path("generators/", include("apps.generators.urls")),
    path("jobs/", include("apps.generation.urls")),
]
