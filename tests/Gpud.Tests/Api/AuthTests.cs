using System.Net;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

public sealed class AuthTests : IDisposable
{
    private const string KeyA = "sk-team-a-0123456789";
    private const string KeyA2 = "sk-team-a-second-key";
    private const string KeyB = "sk-team-b-0123456789";
    private const string Unbound = "sk-unbound-01234567";

    private readonly GpudFactory _gpud = new(new Dictionary<string, string?>
    {
        ["Gpud:ApiKeys:0:Key"] = KeyA,
        ["Gpud:ApiKeys:0:Project"] = "team-a",
        ["Gpud:ApiKeys:1:Key"] = KeyB,
        ["Gpud:ApiKeys:1:Project"] = "team-b",
        ["Gpud:ApiKeys:2:Key"] = KeyA2,
        ["Gpud:ApiKeys:2:Project"] = "team-a",
        ["Gpud:ApiKeys:3"] = Unbound,
    });

    public void Dispose() => _gpud.Dispose();

    [Fact]
    public async Task A_missing_or_wrong_key_is_a_401_invalid_api_key()
    {
        var anonymous = _gpud.CreateClient();
        var missing = await anonymous.GetAsync("/v1/files");
        var error = await missing.AssertError(HttpStatusCode.Unauthorized, code: "invalid_api_key");
        Assert.Contains("didn't provide an API key", error.GetProperty("message").GetString());
        Assert.Equal("Bearer", missing.Headers.WwwAuthenticate.Single().Scheme);

        var wrong = await _gpud.Client("sk-team-a-0123456780").GetAsync("/v1/files");
        error = await wrong.AssertError(HttpStatusCode.Unauthorized, code: "invalid_api_key");
        Assert.DoesNotContain("sk-team-a-0123456780", error.GetProperty("message").GetString()); // only a redacted hint

        await (await _gpud.Client("sk-team-a-0123456780").PostAsync("/v1/files", Requests.UploadForm("{}"))).AssertError(HttpStatusCode.Unauthorized, code: "invalid_api_key");
    }

    [Fact]
    public async Task Each_project_sees_only_its_own_files()
    {
        var a = _gpud.Client(KeyA);
        var b = _gpud.Client(KeyB);
        var id = (await (await a.PostAsync("/v1/files", Requests.UploadForm(Requests.ChatJsonl(1)))).Json()).GetProperty("id").GetString();

        // Another key of the same project sees it.
        Assert.Equal(HttpStatusCode.OK, (await _gpud.Client(KeyA2).GetAsync($"/v1/files/{id}")).StatusCode);

        // Another project: the file does not exist, whatever it tries.
        Assert.Empty((await (await b.GetAsync("/v1/files")).Json()).GetProperty("data").EnumerateArray());
        await (await b.GetAsync($"/v1/files/{id}")).AssertError(HttpStatusCode.NotFound, "id");
        await (await b.GetAsync($"/v1/files/{id}/content")).AssertError(HttpStatusCode.NotFound, "id");
        await (await b.DeleteAsync($"/v1/files/{id}")).AssertError(HttpStatusCode.NotFound, "id");
        await (await b.GetAsync($"/v1/files?after={id}")).AssertError(HttpStatusCode.BadRequest, "after");
        await (await _gpud.Client(Unbound).GetAsync($"/v1/files/{id}")).AssertError(HttpStatusCode.NotFound, "id");

        Assert.Equal(HttpStatusCode.OK, (await a.GetAsync($"/v1/files/{id}")).StatusCode);
    }

    [Fact]
    public async Task Probes_and_metrics_need_no_key()
    {
        var anonymous = _gpud.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/healthz")).StatusCode);
        Assert.NotEqual(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/readyz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/metrics")).StatusCode);
    }

    [Fact]
    public async Task Without_configured_keys_any_bearer_token_is_accepted_on_loopback()
    {
        using var open = new GpudFactory();
        Assert.Equal(HttpStatusCode.OK, (await open.Client("sk-whatever").GetAsync("/v1/files")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await open.CreateClient().GetAsync("/v1/files")).StatusCode);
    }
}
