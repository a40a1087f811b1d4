// The text of one XML start tag (XML 1.0 §3.1 "Start-Tags"), read and rewritten in place so that an edit of a domain
// XML changes only the attributes it sets: the other attributes keep their order, quote characters, spacing and
// entity references byte for byte (libvirt formatdomain: a domain's XML is the admin's file, not ours to reformat).
using System.Text;

namespace VDisk.Engine.Libvirt;

/// <summary>One attribute of a start tag as written: spans into the document text.</summary>
internal readonly record struct TagAttribute(string Name, int LeadStart, int ValueStart, int ValueEnd, char Quote);

/// <summary>A start tag located in a document's text, with its attributes.</summary>
internal sealed class StartTag
{
    private StartTag(int start, int end, int attributesEnd, List<TagAttribute> attributes)
    {
        Start = start;
        End = end;
        AttributesEnd = attributesEnd;
        Attributes = attributes;
    }

    /// <summary>Offset of the '&lt;'.</summary>
    public int Start { get; }

    /// <summary>Offset just past the closing '&gt;'.</summary>
    public int End { get; }

    /// <summary>Offset just past the last attribute (or the element name): where a new attribute goes.</summary>
    public int AttributesEnd { get; }

    /// <summary>The attributes in document order.</summary>
    public IReadOnlyList<TagAttribute> Attributes { get; }

    /// <summary>Reads the start tag whose '&lt;' is at <paramref name="start"/> in <paramref name="text"/>.</summary>
    public static StartTag Read(string text, int start)
    {
        if (start < 0 || start >= text.Length || text[start] != '<')
            throw new InvalidOperationException($"No start tag at offset {start}.");
        int i = start + 1;
        while (i < text.Length && !IsSpace(text[i]) && text[i] != '>' && text[i] != '/') i++;
        int attributesEnd = i;
        var attributes = new List<TagAttribute>();
        while (true)
        {
            int lead = i;
            while (i < text.Length && IsSpace(text[i])) i++;
            if (i >= text.Length) throw new InvalidOperationException($"Unterminated start tag at offset {start}.");
            if (text[i] == '>') return new StartTag(start, i + 1, attributesEnd, attributes);
            if (text[i] == '/') return new StartTag(start, i + 2, attributesEnd, attributes);
            int nameStart = i;
            while (text[i] != '=' && !IsSpace(text[i])) i++;
            string name = text[nameStart..i];
            while (IsSpace(text[i])) i++;
            i++; // '='
            while (IsSpace(text[i])) i++;
            char quote = text[i];
            int valueStart = i + 1;
            int valueEnd = text.IndexOf(quote, valueStart);
            attributes.Add(new TagAttribute(name, lead, valueStart, valueEnd, quote));
            i = valueEnd + 1;
            attributesEnd = i;
        }
    }

    /// <summary>
    /// The tag's text with <paramref name="changes"/> applied: a value replaces an attribute's value (or appends the
    /// attribute after the others, quoted like them), null removes the attribute with the space before it.
    /// </summary>
    public string Rewrite(string text, IEnumerable<KeyValuePair<string, string?>> changes)
    {
        var pending = changes.ToList();
        var result = new StringBuilder();
        int at = Start;
        foreach (var attribute in Attributes)
        {
            int index = pending.FindIndex(c => c.Key == attribute.Name);
            if (index < 0) continue;
            string? value = pending[index].Value;
            pending.RemoveAt(index);
            if (value is null)
            {
                result.Append(text, at, attribute.LeadStart - at);
                at = attribute.ValueEnd + 1;
            }
            else
            {
                result.Append(text, at, attribute.ValueStart - at).Append(Escape(value, attribute.Quote));
                at = attribute.ValueEnd;
            }
        }
        result.Append(text, at, AttributesEnd - at);
        char quote = Attributes.Count > 0 ? Attributes[^1].Quote : '\'';
        foreach (var (name, value) in pending)
            if (value is not null) result.Append(' ').Append(name).Append('=').Append(quote).Append(Escape(value, quote)).Append(quote);
        return result.Append(text, AttributesEnd, End - AttributesEnd).ToString();
    }

    /// <summary>Escapes an attribute value for the given quote character, as libvirt's formatter does.</summary>
    public static string Escape(string value, char quote = '\'')
    {
        var result = new StringBuilder(value.Length);
        foreach (char c in value)
        {
            result.Append(c switch
            {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '\'' when quote == '\'' => "&apos;",
                '"' when quote == '"' => "&quot;",
                _ => c.ToString(),
            });
        }
        return result.ToString();
    }

    private static bool IsSpace(char c) => c is ' ' or '\t' or '\r' or '\n';
}
