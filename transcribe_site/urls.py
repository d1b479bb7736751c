from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from sessions_app import views as session_views

urlpatterns = [
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico whatever the page links: send them to the SVG icon.
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.svg"), permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", session_views.sign_up, name="signup"),
    path("api/", include("sessions_app.api.urls")),
    path("v1/", include("sessions_app.openai_api.urls")),
    path("", include("sessions_app.urls")),
]
