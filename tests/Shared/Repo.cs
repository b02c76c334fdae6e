namespace Gpud.Tests.Infrastructure;

/// <summary>Paths in the source checkout the tests run from.</summary>
public static class Repo
{
    private static readonly Lazy<string?> Found = new(FindRoot);

    public static string Root => Found.Value ?? throw new InvalidOperationException("gpud.sln not found above " + AppContext.BaseDirectory);

    /// <summary>False where the tests run from a published bundle rather than a source checkout.</summary>
    public static bool InCheckout => Found.Value is not null;

    public static string File(string relative) => Path.Combine(Root, relative);

    /// <summary>The daemon built alongside these tests (same configuration).</summary>
    public static string GpudDll
    {
        get
        {
            var configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
            return File($"src/Gpud/bin/{configuration}/net10.0/gpud.dll");
        }
    }

    private static string? FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "gpud.sln"))) return dir.FullName;
        }
        return null;
    }
}
