using System.Text;
using Gpud.Engine.Generation.Constraints;

namespace Gpud.Tests.Infrastructure;

/// <summary>Reading texts with the structured-output grammars, as the constraint tests do.</summary>
internal static class Grammars
{
    /// <summary>How far the grammar reads the bytes from <paramref name="state"/>: (bytes accepted, complete at the end).</summary>
    public static (int Accepted, bool Complete) Read<TGrammar>(TGrammar state, ReadOnlySpan<byte> bytes)
        where TGrammar : struct, IByteGrammar<TGrammar>
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            if (!state.Advance(bytes[i])) return (i, false);
        }
        return (bytes.Length, state.IsComplete);
    }

    public static (int Accepted, bool Complete) Read<TGrammar>(TGrammar state, string text)
        where TGrammar : struct, IByteGrammar<TGrammar> => Read(state, Encoding.UTF8.GetBytes(text));

    /// <summary>The state after <paramref name="prefix"/>, which the grammar must accept whole.</summary>
    public static TGrammar After<TGrammar>(TGrammar state, string prefix) where TGrammar : struct, IByteGrammar<TGrammar>
    {
        foreach (var b in Encoding.UTF8.GetBytes(prefix)) Assert.True(state.Advance(b), $"'{prefix}' is refused");
        return state;
    }

    public static bool Accepts<TGrammar>(TGrammar state, byte[] token) where TGrammar : struct, IByteGrammar<TGrammar> =>
        Read(state, token).Accepted == token.Length;

    /// <summary>The trie walk from <paramref name="state"/> marks exactly the tokens whose bytes the grammar accepts, and some.</summary>
    public static void AssertWalkIsExact<TGrammar>(TokenTrie trie, IReadOnlyList<byte[]?> bytes, TGrammar state, string context)
        where TGrammar : struct, IByteGrammar<TGrammar>
    {
        var walked = new bool[bytes.Count];
        trie.Walk(state, walked);
        for (var id = 0; id < bytes.Count; id++)
        {
            var expected = bytes[id] is { Length: > 0 } token && Accepts(state, token);
            Assert.True(expected == walked[id], $"{context}, token {id} ({Convert.ToHexString(bytes[id] ?? [])}): expected {expected}");
        }
        Assert.Contains(true, walked);
    }
}
