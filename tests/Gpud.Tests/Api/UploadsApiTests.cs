using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// The Uploads API: a file sent in parts (any order), completed into an ordinary file, checked as an upload is; bad
/// completions, cancels and expiry leave no parts behind, and a restart keeps pending parts but sweeps orphans.
/// </summary>
public sealed class UploadsApiTests
{
    [Fact]
    public async Task Parts_sent_in_any_order_complete_into_the_file_they_spell()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var bytes = Encoding.UTF8.GetBytes(Requests.ChatJsonl(30));
        var upload = await CreateAsync(client, bytes.Length);
        Assert.Equal(("upload", "pending"), (upload.GetProperty("object").GetString(), upload.GetProperty("status").GetString()));
        var id = upload.GetProperty("id").GetString()!;

        var third = await PartAsync(client, id, bytes[2000..]);
        var first = await PartAsync(client, id, bytes[..1000]);
        var second = await PartAsync(client, id, bytes[1000..2000]);
        var completed = await (await client.PostAsJsonAsync($"/v1/uploads/{id}/complete", new { part_ids = new[] { first, second, third }, md5 = Md5(bytes) })).Json();

        Assert.Equal("completed", completed.GetProperty("status").GetString());
        var file = completed.GetProperty("file");
        Assert.Equal(("train.jsonl", "fine-tune", "processed"), (file.GetProperty("filename").GetString(), file.GetProperty("purpose").GetString(), file.GetProperty("status").GetString()));
        Assert.Equal(bytes, await client.GetByteArrayAsync($"/v1/files/{file.GetProperty("id").GetString()}/content"));
        Assert.Empty(Parts(gpud));
        await (await client.PostAsJsonAsync($"/v1/uploads/{id}/complete", new { part_ids = new[] { first } }))
            .AssertError(HttpStatusCode.BadRequest, "upload_id", "invalid_upload_state");
    }

    [Fact]
    public async Task Bad_parts_and_completions_are_refused_and_a_cancel_deletes_the_parts()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var bytes = Encoding.UTF8.GetBytes(Requests.ChatJsonl(12));
        var id = (await CreateAsync(client, bytes.Length)).GetProperty("id").GetString()!;
        var head = await PartAsync(client, id, bytes[..100]);
        var tail = await PartAsync(client, id, bytes[100..]);

        await (await client.PostAsync($"/v1/uploads/{id}/parts", Form(new byte[1]))).AssertError(HttpStatusCode.BadRequest, "data", "upload_too_large");
        await (await client.PostAsJsonAsync($"/v1/uploads/{id}/complete", new { part_ids = new[] { tail } }))
            .AssertError(HttpStatusCode.BadRequest, "part_ids"); // bytes do not add up
        await (await client.PostAsJsonAsync($"/v1/uploads/{id}/complete", new { part_ids = new[] { head, head } })).AssertError(HttpStatusCode.BadRequest, "part_ids");
        await (await client.PostAsJsonAsync($"/v1/uploads/{id}/complete", new { part_ids = new[] { head, "part_nope" } })).AssertError(HttpStatusCode.BadRequest, "part_ids");
        var files = (await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").GetArrayLength();

        var cancelled = await (await client.PostAsync($"/v1/uploads/{id}/cancel", null)).Json();
        Assert.Equal("cancelled", cancelled.GetProperty("status").GetString());
        Assert.Empty(Parts(gpud));
        await (await client.PostAsync($"/v1/uploads/{id}/cancel", null)).AssertError(HttpStatusCode.BadRequest, "upload_id", "invalid_upload_state");
        await (await client.PostAsync($"/v1/uploads/{id}/parts", Form(bytes))).AssertError(HttpStatusCode.BadRequest, "upload_id", "invalid_upload_state");
        Assert.Equal(files, (await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").GetArrayLength());

        var other = (await CreateAsync(client, bytes.Length)).GetProperty("id").GetString()!;
        var part = await PartAsync(client, other, bytes);
        await (await client.PostAsJsonAsync($"/v1/uploads/{other}/complete", new { part_ids = new[] { part }, md5 = Md5([.. bytes, 1]) }))
            .AssertError(HttpStatusCode.BadRequest, "md5", "md5_mismatch");
        Assert.Equal(files, (await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").GetArrayLength()); // nothing kept

        await (await client.PostAsJsonAsync("/v1/uploads", new { filename = "a.jsonl", purpose = "homework", bytes = 10, mime_type = "application/jsonl" }))
            .AssertError(HttpStatusCode.BadRequest, "purpose");
        await (await client.PostAsJsonAsync("/v1/uploads", new { filename = "a.jsonl", purpose = "fine-tune", bytes = 1L << 40, mime_type = "application/jsonl" }))
            .AssertError(HttpStatusCode.BadRequest, "bytes", "integer_out_of_range");
        await (await client.PostAsJsonAsync("/v1/uploads", new { filename = "a.jsonl", purpose = "fine-tune", bytes = 10 }))
            .AssertError(HttpStatusCode.BadRequest, "mime_type", "missing_required_parameter");
        await (await client.PostAsync("/v1/uploads/upload_nope/parts", Form(bytes))).AssertError(HttpStatusCode.NotFound, "upload_id");
        var noData = new MultipartFormDataContent { { new StringContent("x"), "other" } };
        await (await client.PostAsync($"/v1/uploads/{other}/parts", noData)).AssertError(HttpStatusCode.BadRequest, "data", "missing_required_parameter");
    }

    [Fact]
    public async Task A_pending_upload_expires_after_an_hour_with_its_parts()
    {
        var time = new ManualTime(DateTimeOffset.UtcNow);
        using var gpud = new GpudFactory(time: time);
        var client = gpud.Client();
        var id = (await CreateAsync(client, 20)).GetProperty("id").GetString()!;
        await PartAsync(client, id, new byte[10]);
        time.Advance(TimeSpan.FromMinutes(59));
        await PartAsync(client, id, new byte[5]);
        time.Advance(TimeSpan.FromMinutes(2));
        var error = await (await client.PostAsync($"/v1/uploads/{id}/parts", Form(new byte[5]))).AssertError(HttpStatusCode.BadRequest, "upload_id", "invalid_upload_state");
        Assert.Contains("'expired'", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty(Parts(gpud));
    }

    [Fact]
    public async Task A_restart_keeps_a_pending_uploads_parts_and_sweeps_parts_nothing_owns()
    {
        using var dir = new TempDir();
        var bytes = Encoding.UTF8.GetBytes(Requests.ChatJsonl(12));
        string id, head;
        using (var first = new GpudFactory(dataDir: dir.Path))
        {
            var client = first.Client();
            id = (await CreateAsync(client, bytes.Length)).GetProperty("id").GetString()!;
            head = await PartAsync(client, id, bytes[..500]);
        }
        var orphan = Path.Combine(dir.Path, "blobs", "uploads", $"{id}.part_orphan"); // a crash between a part's bytes and its row
        File.WriteAllBytes(orphan, new byte[100]);

        using var second = new GpudFactory(dataDir: dir.Path);
        var again = second.Client();
        Assert.False(File.Exists(orphan));
        var tail = await PartAsync(again, id, bytes[500..]);
        var completed = await (await again.PostAsJsonAsync($"/v1/uploads/{id}/complete", new { part_ids = new[] { head, tail } })).Json();
        Assert.Equal(bytes, await again.GetByteArrayAsync($"/v1/files/{completed.GetProperty("file").GetProperty("id").GetString()}/content"));
    }

    private static async Task<JsonElement> CreateAsync(HttpClient client, int bytes)
    {
        var response = await client.PostAsJsonAsync("/v1/uploads", new { filename = "train.jsonl", purpose = "fine-tune", bytes, mime_type = "application/jsonl" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Json();
    }

    private static async Task<string> PartAsync(HttpClient client, string uploadId, byte[] data)
    {
        var response = await client.PostAsync($"/v1/uploads/{uploadId}/parts", Form(data));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var part = await response.Json();
        Assert.Equal(("upload.part", uploadId), (part.GetProperty("object").GetString(), part.GetProperty("upload_id").GetString()));
        return part.GetProperty("id").GetString()!;
    }

    private static MultipartFormDataContent Form(byte[] data) => new() { { new ByteArrayContent(data), "data", "blob" } };

#pragma warning disable CA5351 // the Uploads API's md5 is a transfer checksum the client sends, not a security measure
    private static string Md5(byte[] bytes) => Convert.ToHexStringLower(MD5.HashData(bytes));
#pragma warning restore CA5351

    private static string[] Parts(GpudFactory gpud)
    {
        var directory = Path.Combine(gpud.DataDir, "blobs", "uploads");
        return Directory.Exists(directory) ? Directory.GetFiles(directory) : [];
    }
}
