from django.urls import path

from . import views

app_name = "generators"
urlpatterns = [
    path("", views.generator_list, name="list"),
    path("new/", views.wizard_settings, name="wizard"),
    path("new/images/", views.wizard_data, name="wizard-data"),
    path("<int:pk>/", views.generator_detail, name="detail"),
    path("<int:pk>/share/", views.generator_share, name="share"),
    path("<int:pk>/delete/", views.generator_delete, name="delete"),
    path("<int:pk>/samples.png", views.sample_grid, name="sample-grid"),
    path("<int:pk>/copies.png", views.copies_grid, name="copies-grid"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/grid.png", views.run_grid, name="run-grid"),
]
