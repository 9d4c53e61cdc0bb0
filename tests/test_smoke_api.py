from tests.conftest import auth


async def test_put_update_get(client, keys):
    body = {"patient_name": "Ratan Das", "contact_mobile": "098300 12345"}
    r = await client.put("/api/v1/admissions/R-1", json=body, headers=auth(keys["MRB"]))
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/admissions/R-1/updates", json={"condition": "critical", "care_area": "icu", "spo2": 88}, headers=auth(keys["MRB"]))
    assert r.status_code == 201, r.text
    r = await client.get("/api/v1/admissions/R-1", headers=auth(keys["MRB"]))
    assert r.json()["latest_update"]["condition"] == "critical", r.text
    r = await client.get("/api/v1/admissions/R-1", headers=auth(keys["MCK"]))
    assert r.status_code == 404
