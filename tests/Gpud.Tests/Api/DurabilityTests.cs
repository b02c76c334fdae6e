using System.Diagnostics;
using System.Net;
using System.Text;
using Gpud.Tests.Infrastructure;
using Requests = Gpud.Tests.Infrastructure.Requests;

namespace Gpud.Tests.Api;

/// <summary>Uploads never leave half files that the API serves, whatever happens mid-way.</summary>
public sealed class DurabilityTests
{
    [Fact]
    public async Task A_client_that_drops_its_connection_mid_upload_leaves_nothing_visible()
    {
        using var dir = new TempDir();
        using var gpud = await DaemonProcess.StartAsync(dir.Path);

        await SendHalfAnUploadAsync(gpud, declaredBytes: 10_000_000, sentBytes: 300_000, thenClose: true);

        await WaitUntil(() => !Directory.EnumerateFiles(Path.Combine(dir.Path, "tmp")).Any());
        using var client = gpud.Client();
        Assert.Empty((await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").EnumerateArray());
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(dir.Path, "blobs"), "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Kill_9_mid_upload_loses_nothing_committed_and_serves_nothing_partial()
    {
        using var dir = new TempDir();
        var bytes = Encoding.UTF8.GetBytes(Requests.ChatJsonl(50));
        string id;
        using (var gpud = await DaemonProcess.StartAsync(dir.Path))
        {
            using var client = gpud.Client();
            id = (await (await client.PostAsync("/v1/files", Requests.UploadForm(bytes))).Json()).GetProperty("id").GetString()!;

            using var socket = await SendHalfAnUploadAsync(gpud, declaredBytes: 10_000_000, sentBytes: 300_000, thenClose: false);
            await WaitUntil(() => Directory.EnumerateFiles(Path.Combine(dir.Path, "tmp")).Any()); // the upload is streaming to disk
            gpud.Kill();
        }

        using (var restarted = await DaemonProcess.StartAsync(dir.Path))
        {
            using var client = restarted.Client();
            var files = (await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").EnumerateArray().ToList();
            Assert.Equal([id], files.Select(f => f.GetProperty("id").GetString()));
            Assert.Equal(bytes, await client.GetByteArrayAsync($"/v1/files/{id}/content"));
            Assert.Empty(Directory.EnumerateFiles(Path.Combine(dir.Path, "tmp")));
        }
    }

    /// <summary>Starts a multipart upload over a raw socket and stops sending part-way, as a dying client would.</summary>
    private static async Task<System.Net.Sockets.TcpClient> SendHalfAnUploadAsync(DaemonProcess gpud, int declaredBytes, int sentBytes, bool thenClose)
    {
        var socket = new System.Net.Sockets.TcpClient();
        await socket.ConnectAsync("127.0.0.1", gpud.Port);
        var stream = socket.GetStream();
        const string boundary = "gpudtestboundary";
        var head = $"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n" +
                   $"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"train.jsonl\"\r\n\r\n";
        var request = $"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-anything\r\n" +
                      $"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {head.Length + declaredBytes}\r\n\r\n{head}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        var line = Encoding.UTF8.GetBytes(Requests.ChatJsonl(1));
        for (var sent = 0; sent < sentBytes; sent += line.Length) await stream.WriteAsync(line);
        await stream.FlushAsync();
        if (thenClose) socket.Dispose();
        return socket;
    }

    [Fact]
    public async Task After_a_crash_partial_uploads_and_unowned_blobs_are_swept_and_committed_files_survive()
    {
        using var dir = new TempDir();
        var bytes = Encoding.UTF8.GetBytes(Requests.ChatJsonl(20));
        string id;
        using (var before = new GpudFactory(dataDir: dir.Path))
        {
            id = (await (await before.Client().PostAsync("/v1/files", Requests.UploadForm(bytes))).Json()).GetProperty("id").GetString()!;
        }
        // What kill -9 can leave: a half-written upload, and a blob renamed into place whose row was never inserted.
        await File.WriteAllTextAsync(Path.Combine(dir.Path, "tmp", "deadbeef.part"), "{\"messages\":[");
        await File.WriteAllTextAsync(Path.Combine(dir.Path, "blobs", "files", "file-orphan"), "orphan");

        using var after = new GpudFactory(dataDir: dir.Path);
        var client = after.Client();

        Assert.Equal(bytes, await client.GetByteArrayAsync($"/v1/files/{id}/content"));
        Assert.Equal([id], (await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").EnumerateArray().Select(f => f.GetProperty("id").GetString()));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(dir.Path, "tmp")));
        Assert.False(File.Exists(Path.Combine(dir.Path, "blobs", "files", "file-orphan")));
    }

    [Fact]
    public async Task A_600_MB_upload_is_refused_with_413_while_memory_stays_flat()
    {
        // The real daemon over a real socket, its own resident memory sampled from /proc: nothing else runs in it.
        using var dir = new TempDir();
        using var gpud = await DaemonProcess.StartAsync(dir.Path); // the default 512 MiB limit
        using var client = gpud.Client();
        client.Timeout = TimeSpan.FromMinutes(5);
        const long size = 600L * 1000 * 1000;
        var form = new MultipartFormDataContent
        {
            { new StreamContent(new GeneratedJsonlStream(size)), "file", "huge.jsonl" },
            { new StringContent("fine-tune"), "purpose" },
        };

        await WaitUntil(() => (client.GetAsync("/readyz").Result).IsSuccessStatusCode); // libtorch and models loaded
        var baseline = gpud.ResidentBytes();
        long peak = baseline;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, gpud.ResidentBytes());
                await Task.Delay(20);
            }
        });

        HttpResponseMessage? response = null;
        try
        {
            response = await client.PostAsync("/v1/files", form);
        }
        catch (HttpRequestException)
        {
            // Kestrel may close the connection after answering 413 while the client is still sending.
        }
        await sampling.CancelAsync();
        await sampler;

        if (response is not null) await response.AssertError(HttpStatusCode.RequestEntityTooLarge, "file", "file_too_large");
        Assert.True(peak - baseline < 100L * 1024 * 1024, $"gpud's resident memory grew by {(peak - baseline) / (1024 * 1024)} MiB while receiving 600 MB");
        await WaitUntil(() => !Directory.EnumerateFiles(dir.Path, "*.part", SearchOption.AllDirectories).Any());
        Assert.Empty((await (await client.GetAsync("/v1/files")).Json()).GetProperty("data").EnumerateArray());
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 400 && !condition(); i++) await Task.Delay(50);
        Assert.True(condition());
    }

    /// <summary>Valid chat JSONL of a given size, generated on the fly: nothing of it is held in memory.</summary>
    private sealed class GeneratedJsonlStream(long size) : Stream
    {
        private static readonly byte[] Line = Encoding.UTF8.GetBytes(
            """{"messages":[{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"Paris."}]}""" + "\n");
        private long _position;

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = (int)Math.Min(count, size - _position);
            for (var i = 0; i < n; i++) buffer[offset + i] = Line[(_position + i) % Line.Length];
            _position += n;
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
