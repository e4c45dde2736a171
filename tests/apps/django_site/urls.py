from __future__ import annotations

from django.urls import include, path, re_path

from . import views

api = [path("items/<int:item_id>/", views.item)]

urlpatterns = [
    path("orders/<int:order_id>/", views.order),
    re_path(r"^legacy/(?P<slug>[a-z]+)/$", views.legacy),
    path("explode/", views.explode),
    path("stream/", views.stream),
    path("async/<int:n>/", views.async_view),
    path("api/", include(api)),
    path("checkout/", views.checkout),
    path("download/", views.download),
]
