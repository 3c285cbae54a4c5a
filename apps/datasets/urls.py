from django.urls import path

from . import views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("<int:pk>/", views.dataset_detail, name="detail"),
    path("<int:pk>/review/", views.dataset_review, name="review"),
    path("<int:pk>/labelling/", views.dataset_labelling, name="labelling"),
    path("<int:pk>/augmentation.png", views.augmentation_preview, name="augmentation-preview"),
    path("<int:pk>/delete/", views.dataset_delete, name="delete"),
    path("images/<int:pk>.png", views.image_file, name="image"),
]
