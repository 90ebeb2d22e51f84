from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="Stock",
            fields=[
                ("sku", models.CharField(max_length=50, primary_key=True, serialize=False)),
                ("available", models.IntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("email", models.EmailField(max_length=254)),
                ("sku", models.CharField(max_length=50)),
                ("quantity", models.IntegerField()),
            ],
        ),
    ]
