using System.Security.Claims;
using System.Text.Encodings.Web;
using Gpud.Api.Errors;
using Gpud.Services.Projects;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Gpud.Api.Auth;

/// <summary><c>Authorization: Bearer &lt;key&gt;</c> against <see cref="ApiKeyRing"/>; a key's project becomes a claim.</summary>
internal sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory loggerFactory,
    UrlEncoder encoder,
    ApiKeyRing keys)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, loggerFactory, encoder)
{
    public const string SchemeName = "ApiKey";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : null;

        if (keys.IsOpen) return Task.FromResult(Success(Project.Default));
        if (string.IsNullOrEmpty(token)) return Task.FromResult(AuthenticateResult.NoResult());
        var project = keys.ProjectOf(token);
        return Task.FromResult(project is null ? AuthenticateResult.Fail("Incorrect API key provided.") : Success(project));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.Headers.WWWAuthenticate = "Bearer";
        var header = Request.Headers.Authorization.ToString();
        var message = string.IsNullOrWhiteSpace(header)
            ? "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            : $"Incorrect API key provided: {Redact(header)}.";
        return ApiErrors.WriteAsync(Context, StatusCodes.Status401Unauthorized, message, null, "invalid_api_key");
    }

    private static AuthenticateResult Success(string project)
    {
        var identity = new ClaimsIdentity([new Claim(CallerProject.ClaimType, project)], SchemeName);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName));
    }

    /// <summary>Like OpenAI: enough of the key to recognise it, never enough to use it.</summary>
    private static string Redact(string header)
    {
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : header.Trim();
        return token.Length < 16 ? "***" : $"{token[..3]}***{token[^4..]}";
    }
}

/// <summary>The calling project, as set by <see cref="ApiKeyAuthenticationHandler"/>.</summary>
public static class CallerProject
{
    public const string ClaimType = "gpud:project";

    public static string Project(this ClaimsPrincipal user)
    {
        ArgumentNullException.ThrowIfNull(user);
        return user.FindFirst(ClaimType)?.Value
               ?? throw new InvalidOperationException("The endpoint was reached without an authenticated project.");
    }
}
