namespace Gpud.Engine.Templates;

/// <summary>A chat template that cannot be parsed; the message says where.</summary>
public sealed class TemplateSyntaxException(string message, int position)
    : Exception($"{message} (at character {position} of the chat template)");

/// <summary>A template called <c>raise_exception(...)</c> or failed while rendering: the messages do not fit it.</summary>
public sealed class TemplateRenderException(string message) : Exception(message);
