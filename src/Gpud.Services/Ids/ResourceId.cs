using System.Buffers;
using System.Security.Cryptography;

namespace Gpud.Services.Ids;

/// <summary>OpenAI-style opaque ids (<c>file-…</c>, <c>ftjob-…</c>): a prefix and 24 random base62 characters.</summary>
public static class ResourceId
{
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    private static readonly SearchValues<char> AlphabetValues = SearchValues.Create(Alphabet);

    public static string New(string prefix) => prefix + RandomNumberGenerator.GetString(Alphabet, 24);

    /// <summary>True if <paramref name="id"/> could have been made by <see cref="New"/> with this prefix.</summary>
    public static bool IsWellFormed(string id, string prefix) =>
        id.Length == prefix.Length + 24
        && id.StartsWith(prefix, StringComparison.Ordinal)
        && !id.AsSpan(prefix.Length).ContainsAnyExcept(AlphabetValues);
}
