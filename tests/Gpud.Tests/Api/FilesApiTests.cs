using System.Net;
using System.Text;
using System.Text.Json;
using Gpud.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Gpud.Tests.Api;

public sealed class FilesApiTests : IDisposable
{
    private readonly GpudFactory _gpud = new();

    public void Dispose() => _gpud.Dispose();

    [Fact]
    public async Task Uploaded_bytes_come_back_identical_and_the_file_is_processed()
    {
        var client = _gpud.Client();
        var bytes = Encoding.UTF8.GetBytes(Requests.ChatJsonl(12));

        var created = await client.PostAsync("/v1/files", Requests.UploadForm(bytes, filename: "my data (1).jsonl"));
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var file = await created.Json();
        var id = file.GetProperty("id").GetString()!;
        Assert.StartsWith("file-", id);
        Assert.Equal("file", file.GetProperty("object").GetString());
        Assert.Equal(bytes.Length, file.GetProperty("bytes").GetInt64());
        Assert.Equal("my data (1).jsonl", file.GetProperty("filename").GetString());
        Assert.Equal("fine-tune", file.GetProperty("purpose").GetString());
        Assert.Equal("processed", file.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, file.GetProperty("status_details").ValueKind);
        Assert.InRange(file.GetProperty("created_at").GetInt64(), DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 60, DateTimeOffset.UtcNow.ToUnixTimeSeconds());

        var retrieved = await (await client.GetAsync($"/v1/files/{id}")).Json();
        Assert.Equal(file.GetRawText(), retrieved.GetRawText());

        var content = await client.GetAsync($"/v1/files/{id}/content");
        Assert.Equal(bytes.Length, content.Content.Headers.ContentLength);
        Assert.Equal(bytes, await content.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task An_invalid_training_line_makes_the_file_an_error_naming_that_line()
    {
        var jsonl = Requests.ChatJsonl(3) + """{"messages":[{"role":"user","content":"q"}]}""" + "\n";

        var file = await (await _gpud.Client().PostAsync("/v1/files", Requests.UploadForm(jsonl))).Json();

        Assert.Equal("error", file.GetProperty("status").GetString());
        Assert.StartsWith("Line 4: example_missing_assistant_message", file.GetProperty("status_details").GetString());
    }

    [Fact]
    public async Task Files_of_other_purposes_are_not_parsed_as_training_data()
    {
        var file = await (await _gpud.Client().PostAsync("/v1/files", Requests.UploadForm("not jsonl at all", "user_data", "notes.txt"))).Json();
        Assert.Equal("processed", file.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Listing_pages_through_every_file_in_order_even_when_the_cursor_was_deleted()
    {
        var client = _gpud.Client();
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            var purpose = i == 2 ? "batch" : "fine-tune";
            ids.Add((await (await client.PostAsync("/v1/files", Requests.UploadForm(Requests.ChatJsonl(1), purpose))).Json()).GetProperty("id").GetString()!);
        }

        // Newest first by default, two at a time, the way the SDKs' iterators ask for pages.
        var seen = new List<string>();
        string? after = null;
        while (true)
        {
            var page = await (await client.GetAsync($"/v1/files?limit=2{(after is null ? "" : $"&after={after}")}")).Json();
            Assert.Equal("list", page.GetProperty("object").GetString());
            var data = page.GetProperty("data").EnumerateArray().Select(f => f.GetProperty("id").GetString()!).ToList();
            seen.AddRange(data);
            Assert.Equal(data[0], page.GetProperty("first_id").GetString());
            Assert.Equal(data[^1], page.GetProperty("last_id").GetString());
            after = data[^1];
            if (seen.Count == 2) await client.DeleteAsync($"/v1/files/{after}"); // cursor deleted between pages
            if (!page.GetProperty("has_more").GetBoolean()) break;
        }
        Assert.Equal(Enumerable.Reverse(ids), seen);

        var ascending = await (await client.GetAsync("/v1/files?order=asc&purpose=fine-tune")).Json();
        Assert.Equal(new[] { ids[0], ids[1], ids[4] }, ascending.GetProperty("data").EnumerateArray().Select(f => f.GetProperty("id").GetString()));
    }

    [Fact]
    public async Task Deleting_a_file_removes_it_and_its_bytes()
    {
        var client = _gpud.Client();
        var id = (await (await client.PostAsync("/v1/files", Requests.UploadForm(Requests.ChatJsonl(2)))).Json()).GetProperty("id").GetString()!;

        var deleted = await (await client.DeleteAsync($"/v1/files/{id}")).Json();

        Assert.Equal($$"""{"id":"{{id}}","object":"file","deleted":true}""", deleted.GetRawText());
        await (await client.GetAsync($"/v1/files/{id}")).AssertError(HttpStatusCode.NotFound, "id");
        await (await client.GetAsync($"/v1/files/{id}/content")).AssertError(HttpStatusCode.NotFound, "id");
        await (await client.DeleteAsync($"/v1/files/{id}")).AssertError(HttpStatusCode.NotFound, "id");
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_gpud.DataDir, "blobs"), "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Upload_validation_errors_name_the_field()
    {
        var client = _gpud.Client();
        await (await client.PostAsync("/v1/files", Requests.UploadForm("x"u8.ToArray(), purpose: null))).AssertError(HttpStatusCode.BadRequest, "purpose");
        await (await client.PostAsync("/v1/files", Requests.UploadForm("x", "homework"))).AssertError(HttpStatusCode.BadRequest, "purpose");

        var noFile = new MultipartFormDataContent { { new StringContent("fine-tune"), "purpose" } };
        await (await client.PostAsync("/v1/files", noFile)).AssertError(HttpStatusCode.BadRequest, "file");

        var badExpiry = Requests.UploadForm("x", "user_data");
        badExpiry.Add(new StringContent("created_at"), "expires_after[anchor]");
        badExpiry.Add(new StringContent("60"), "expires_after[seconds]");
        await (await client.PostAsync("/v1/files", badExpiry)).AssertError(HttpStatusCode.BadRequest, "expires_after[seconds]");

        await (await client.GetAsync("/v1/files?limit=0")).AssertError(HttpStatusCode.BadRequest, "limit", "integer_out_of_range");
        await (await client.GetAsync("/v1/files?limit=ten")).AssertError(HttpStatusCode.BadRequest, "limit", "invalid_type");
        await (await client.GetAsync("/v1/files?order=sideways")).AssertError(HttpStatusCode.BadRequest, "order");
        await (await client.GetAsync("/v1/files?after=file-nope")).AssertError(HttpStatusCode.BadRequest, "after");
        Assert.Empty((await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task A_file_with_an_expiry_reports_it_and_disappears_when_it_passes()
    {
        var time = new ManualTime(DateTimeOffset.UtcNow);
        using var gpud = new GpudFactory(time: time);
        var client = gpud.Client();
        var form = Requests.UploadForm("x", "user_data");
        form.Add(new StringContent("created_at"), "expires_after[anchor]");
        form.Add(new StringContent("3600"), "expires_after[seconds]");

        var file = await (await client.PostAsync("/v1/files", form)).Json();
        var id = file.GetProperty("id").GetString();

        Assert.Equal(file.GetProperty("created_at").GetInt64() + 3600, file.GetProperty("expires_at").GetInt64());
        time.Advance(TimeSpan.FromSeconds(3599));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/files/{id}")).StatusCode);
        time.Advance(TimeSpan.FromSeconds(2));
        await (await client.GetAsync($"/v1/files/{id}")).AssertError(HttpStatusCode.NotFound, "id");
        Assert.Empty((await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").EnumerateArray());

        // The expiry sweep then removes the bytes too.
        Assert.Equal(1, gpud.Services.GetRequiredService<Gpud.Services.Files.FilesService>().DeleteExpired());
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(gpud.DataDir, "blobs"), "*", SearchOption.AllDirectories));
    }
}
