using Gpud.Hosting;

// Content root = the app's folder, so appsettings.json is found whatever the working directory
// (`dotnet run --project src/Gpud` from the repo root, or systemd). Gpud:DataDir stays relative to the working directory.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.Services.AddGpud(builder.Configuration);

var app = builder.Build();
app.UseGpud();
return await app.RunGpudAsync();

/// <summary>Entry point; public for WebApplicationFactory in the tests.</summary>
public partial class Program;
