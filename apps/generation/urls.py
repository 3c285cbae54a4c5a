from django.urls import path

from . import views

app_name = "generation"
urlpatterns = [
    path("new/<int:generator_pk>/", views.start_job, name="start"),
    path("<int:pk>/", views.job_detail, name="job"),
    path("<int:pk>/results/", views.job_gallery, name="results"),
    path("<int:pk>/download/", views.job_download, name="download"),
    path("<int:pk>/images/<path:name>", views.job_image, name="image"),
]
