namespace Gpud.Api.Errors;

/// <summary>OpenAI's error envelope: <c>{"error":{"message","type","param","code"}}</c>, all four keys always present.</summary>
public sealed record ErrorResponse(ErrorBody Error);

public sealed record ErrorBody(string Message, string Type, string? Param, string? Code);
