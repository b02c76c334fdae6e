using System.Globalization;
using Gpud.Api.Errors;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Lists;

/// <summary>Query parameters every list endpoint shares. Ranges are the service's call; the type is checked here.</summary>
internal static class ListQuery
{
    /// <summary>Parses <c>limit</c> (absent: null); a non-integer is a 400 naming <c>limit</c>.</summary>
    public static bool TryParseLimit(string? limit, out int? take, out JsonHttpResult<ErrorResponse> error)
    {
        take = null;
        error = null!;
        if (limit is null) return true;
        if (int.TryParse(limit, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var parsed))
        {
            take = parsed;
            return true;
        }
        error = ApiErrors.Result(400, "limit must be an integer.", "limit", "invalid_type");
        return false;
    }

    /// <summary><c>metadata[key]=value</c> filters, as the SDKs encode an object in a query string.</summary>
    public static Dictionary<string, string> Metadata(IQueryCollection query)
    {
        ArgumentNullException.ThrowIfNull(query);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in query)
        {
            if (key.StartsWith("metadata[", StringComparison.Ordinal) && key.EndsWith(']') && key.Length > "metadata[]".Length)
                metadata[key["metadata[".Length..^1]] = value.ToString();
        }
        return metadata;
    }
}
