using System.Security.Cryptography;
using System.Text;
using Gpud.Hosting;
using Microsoft.Extensions.Options;

namespace Gpud.Api.Auth;

/// <summary>
/// The configured API keys, held as SHA-256 digests. A presented key is hashed and compared with every digest in
/// constant time, so neither the comparison nor an early exit reveals how much of a key matched.
/// </summary>
public sealed class ApiKeyRing
{
    private readonly (byte[] Digest, string Project)[] _keys;

    public ApiKeyRing(IOptions<ApiKeyOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _keys = options.Value.Keys.Select(k => (SHA256.HashData(Encoding.UTF8.GetBytes(k.Key)), k.Project)).ToArray();
    }

    /// <summary>With no keys configured every caller is accepted (the daemon then listens on loopback only).</summary>
    public bool IsOpen => _keys.Length == 0;

    /// <summary>The project the key is bound to, or null if it is not a configured key.</summary>
    public string? ProjectOf(string presentedKey)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(presentedKey), digest);
        string? project = null;
        foreach (var (candidate, candidateProject) in _keys)
        {
            if (CryptographicOperations.FixedTimeEquals(candidate, digest)) project = candidateProject;
        }
        return project;
    }
}
