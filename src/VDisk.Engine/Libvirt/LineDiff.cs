// A line diff of two texts (longest common subsequence), in the unified style "-old" / "+new" with no context: what
// -WhatIf shows for a domain XML edit. Domain XML is a few hundred lines, so the quadratic table is small.
namespace VDisk.Engine.Libvirt;

/// <summary>Line differences between two texts.</summary>
public static class LineDiff
{
    /// <summary>The lines only in <paramref name="before"/> ("- ...") and only in <paramref name="after"/> ("+ ..."), in order.</summary>
    public static IReadOnlyList<string> Compare(string before, string after)
    {
        string[] a = before.Split('\n'), b = after.Split('\n');
        var common = new int[a.Length + 1, b.Length + 1];
        for (int i = a.Length - 1; i >= 0; i--)
            for (int j = b.Length - 1; j >= 0; j--)
                common[i, j] = a[i] == b[j] ? common[i + 1, j + 1] + 1 : Math.Max(common[i + 1, j], common[i, j + 1]);
        var lines = new List<string>();
        int x = 0, y = 0;
        while (x < a.Length || y < b.Length)
        {
            if (x < a.Length && y < b.Length && a[x] == b[y]) { x++; y++; }
            else if (x < a.Length && (y == b.Length || common[x + 1, y] >= common[x, y + 1])) lines.Add("- " + a[x++].TrimEnd('\r'));
            else lines.Add("+ " + b[y++].TrimEnd('\r'));
        }
        return lines;
    }
}
