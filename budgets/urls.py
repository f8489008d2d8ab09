from __future__ import annotations

from django.urls import URLPattern, path

from budgets import views

urlpatterns: list[URLPattern] = [
    path("settings/budgets/", views.budget_list, name="budget_list"),
    path("settings/budgets/<int:pk>/", views.budget_detail, name="budget_detail"),
    path("settings/budgets/<int:pk>/release/", views.budget_release, name="budget_release"),
    path("settings/budgets/<int:pk>/delete/", views.budget_delete, name="budget_delete"),
]
