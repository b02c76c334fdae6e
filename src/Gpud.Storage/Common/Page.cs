namespace Gpud.Storage.Common;

/// <summary>One page of a keyset-paginated listing.</summary>
public sealed record Page<T>(IReadOnlyList<T> Items, bool HasMore);
